// One way for a form or button of the VM page to send its request: busy while it runs, the
// problem (shown by ProblemLine, with its hint) when it fails; the snapshot, clone, publish,
// template and guest forms all use it.
import { useState } from "react";

export interface Action {
  busy: boolean;
  problem: unknown;
  clearProblem: () => void;
  /** Run `work`; true when it succeeded (its failure is `problem`). */
  run: (work: () => Promise<void>) => Promise<boolean>;
}

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<unknown>(null);
  const run = async (work: () => Promise<void>): Promise<boolean> => {
    setBusy(true);
    setProblem(null);
    try {
      await work();
      return true;
    } catch (err) {
      setProblem(err);
      return false;
    } finally {
      setBusy(false);
    }
  };
  return { busy, problem, clearProblem: () => setProblem(null), run };
}
