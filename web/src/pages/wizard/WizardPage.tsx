// The Create VM wizard (route /vms/new): Basics → Placement → Hardware → Boot media →
// Cloud-init → Review → Create, then the VM's progress to running/ready.
import { useEffect, useMemo, useRef, useState } from "react";
import { ProblemError, sendJson } from "../../api/client";
import type { ImageRecord, VmRecord } from "../../api/types";
import type { LineError } from "../../components/CodeEditor";
import { ProblemLine } from "../../components/bits";
import {
  configErrorOf, type Draft, type Errors, firstInvalidStep, minimumDiskGib, NEW_DRAFT, requestBody, setupStepTitle, type Step,
  STEP_TITLES, STEPS, usesCloudInit, validateStep, type WizardContext,
} from "../../lib/wizard";
import { osTypeOf, raiseToMinimums, versionOf } from "../../lib/windows";
import { live, useLive } from "../../state/live";
import { ProgressView } from "./Progress";
import { ReviewStep } from "./Review";
import { BasicsStep, BootStep, CloudInitStep, HardwareStep, PlacementStep } from "./steps";

function newKey(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function WizardPage() {
  const [generation, setGeneration] = useState(0);
  return <Wizard key={generation} onAnother={() => setGeneration((g) => g + 1)} />;
}

function Wizard({ onAnother }: { onAnother: () => void }) {
  const snapshot = useLive();
  // /vms/new?image=<id> (the Images page's "Create VM" link) starts with that image chosen.
  const [draft, setDraft] = useState<Draft>(() => draftFromQuery(new URLSearchParams(window.location.search), snapshot.images));
  const [step, setStep] = useState<Step>("basics");
  const [visited, setVisited] = useState<Set<Step>>(new Set(["basics"]));
  const [attempted, setAttempted] = useState<Set<Step>>(new Set());
  const [shownErrors, setShownErrors] = useState<Errors>({}); // from the server, until an edit
  const [configError, setConfigError] = useState<LineError | null>(null);
  const [problem, setProblem] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [created, setCreated] = useState<VmRecord | null>(null);
  const stepHeading = useRef<HTMLHeadingElement>(null);
  const fromQuery = useRef(false);
  useEffect(() => {
    // A link opened in a new tab: the image list arrives after the first render.
    if (fromQuery.current || !snapshot.loaded) return;
    fromQuery.current = true;
    const query = new URLSearchParams(window.location.search);
    if (query.get("image") && !draft.imageId) setDraft((d) => ({ ...draftFromQuery(query, snapshot.images), name: d.name }));
  }, [snapshot.loaded, snapshot.images, draft.imageId]);

  const ctx: WizardContext = useMemo(() => ({
    takenNames: new Set([...snapshot.vms.values()].map((vm) => vm.name)),
    images: snapshot.images,
    nodes: snapshot.nodes,
  }), [snapshot.vms, snapshot.images, snapshot.nodes]);

  // Live validation: a step's errors follow the typing once Next was tried (the name at once).
  const liveErrors = validateStep(step, draft, ctx);
  const showLive = attempted.has(step) || (step === "basics" && draft.name !== "");
  const errors: Errors = { ...(showLive ? liveErrors : {}), ...shownErrors };

  const update = (patch: Partial<Draft>) => {
    setDraft((d) => ({ ...d, ...patch }));
    if ("userData" in patch || "customConfig" in patch) setConfigError(null);
    setShownErrors({});
  };

  const goTo = (target: Step) => {
    setStep(target);
    setVisited((v) => new Set([...v, target]));
    setShownErrors({});
    setProblem(null);
    requestAnimationFrame(() => stepHeading.current?.focus());
  };

  const index = STEPS.indexOf(step);
  const next = () => {
    const found = validateStep(step, draft, ctx);
    if (Object.keys(found).length) {
      setAttempted((a) => new Set([...a, step]));
      return;
    }
    goTo(STEPS[index + 1]);
  };

  const create = async () => {
    const invalid = firstInvalidStep(draft, ctx);
    if (invalid) {
      goTo(invalid);
      setAttempted((a) => new Set([...a, invalid]));
      return;
    }
    setBusy(true);
    setProblem(null);
    try {
      const vm = await sendJson<VmRecord>("POST", "/v1/vms", requestBody(draft, ctx), { "Idempotency-Key": newKey() });
      live.putVm(vm);
      setCreated(vm);
    } catch (err) {
      routeProblem(err);
    } finally {
      setBusy(false);
    }
  };

  // A refusal is shown where it can be fixed: the config at its line, the name on Basics...
  const routeProblem = (err: unknown) => {
    if (!(err instanceof ProblemError)) {
      setProblem(err);
      return;
    }
    const config = configErrorOf(err.code, err.body, err.message);
    if (config) {
      goTo("cloud-init");
      setConfigError({ line: config.line ?? 0, column: config.column, message: err.message });
      return;
    }
    if (err.code === "invalid_ssh_key" && typeof err.body.index === "number") {
      goTo("cloud-init");
      setShownErrors({ [`sshKey${err.body.index}`]: String(err.body.reason ?? err.message) });
      return;
    }
    if (err.code === "name_taken") {
      goTo("basics");
      setShownErrors({ name: err.message });
      return;
    }
    if (err.code === "invalid_computer_name") {
      goTo("cloud-init");
      setShownErrors({ "win.computerName": err.message });
      return;
    }
    if (err.code === "windows_too_small") {
      goTo("hardware");
      setProblem(err);
      return;
    }
    if (err.code === "image_not_found") {
      goTo("boot");
      setShownErrors({ image: err.message });
      return;
    }
    setProblem(err);
  };

  if (created) {
    const vm = snapshot.vms.get(created.id) ?? created;
    return (
      <section className="page wizard">
        <h1>Create VM</h1>
        <ProgressView vm={vm} withCloudInit={usesCloudInit(draft)} onAnother={onAnother} />
      </section>
    );
  }

  const stepProps = { draft, update, errors, ctx };
  return (
    <section className="page wizard" aria-labelledby="wizard-title">
      <h1 id="wizard-title">Create VM</h1>
      <nav aria-label="Wizard steps">
        <ol className="stepper">
          {STEPS.map((s, i) => (
            <li key={s} className={s === step ? "current" : visited.has(s) ? "visited" : ""}>
              <button type="button" className="step-button" disabled={!visited.has(s) || busy}
                      aria-current={s === step ? "step" : undefined} onClick={() => goTo(s)}>
                <span className="step-number">{i + 1}</span> {stepTitle(s, draft)}
              </button>
            </li>
          ))}
        </ol>
      </nav>
      <form className="card wizard-card" onSubmit={(e) => { e.preventDefault(); if (step === "review") void create(); else next(); }}
            noValidate data-step={step}>
        <h2 ref={stepHeading} tabIndex={-1} id="step-title">{stepTitle(step, draft)}</h2>
        {step === "basics" && <BasicsStep {...stepProps} />}
        {step === "placement" && <PlacementStep {...stepProps} />}
        {step === "hardware" && <HardwareStep {...stepProps} />}
        {step === "boot" && <BootStep {...stepProps} />}
        {step === "cloud-init" && <CloudInitStep {...stepProps} configError={configError} />}
        {step === "review" && <ReviewStep draft={draft} ctx={ctx} origin={window.location.origin} />}
        <ProblemLine error={problem} onDismiss={() => setProblem(null)} />
        <div className="wizard-actions">
          {index > 0 && <button type="button" onClick={() => goTo(STEPS[index - 1])} disabled={busy}>Back</button>}
          {step !== "review" && <button type="submit" className="primary" id="wizard-next">Next</button>}
          {step === "review" && <button type="submit" className="primary" id="wizard-create" disabled={busy}>{busy ? "Creating…" : "Create VM"}</button>}
        </div>
      </form>
    </section>
  );
}

function draftFromQuery(query: URLSearchParams, images: ReadonlyMap<string, ImageRecord>): Draft {
  const imageId = query.get("image") ?? "";
  const image = images.get(imageId);
  if (!image) return NEW_DRAFT;
  const osType = osTypeOf(image);
  let draft: Draft = { ...NEW_DRAFT, imageId, boot: image.format === "iso" ? "iso" : "cloud",
                       user: image.default_user || NEW_DRAFT.user, osType };
  if (osType === "windows") {
    const raise = raiseToMinimums({ vcpus: draft.vcpus, memoryMib: 1024, diskGib: draft.diskGib });
    draft = { ...draft, ...raise.patch, win: { ...draft.win, version: versionOf(image) } };
  }
  const minimum = minimumDiskGib(draft, { takenNames: new Set(), images, nodes: [] });
  return { ...draft, diskGib: String(Math.max(Number(draft.diskGib), minimum)) };
}

function stepTitle(step: Step, draft: Draft): string {
  if (step === "cloud-init") return setupStepTitle(draft);
  return STEP_TITLES[step];
}
