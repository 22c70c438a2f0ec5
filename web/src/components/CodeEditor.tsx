// A plain <textarea> over a highlighted <pre>: native editing, selection, undo and screen-reader
// behaviour, colour from the overlay. A problem at a line is marked in the gutter and written at
// the end of that line (so the lines below stay aligned with the textarea's).
import { useId, useMemo } from "react";
import { highlightLine } from "../lib/yamlHighlight";

export interface LineError {
  line: number;
  column: number | null;
  message: string;
}

export interface CodeEditorProps {
  id: string;
  label: string;
  value: string;
  onChange: (value: string) => void;
  error?: LineError | null;
}

export function CodeEditor({ id, label, value, onChange, error }: CodeEditorProps) {
  const lines = useMemo(() => value.split("\n"), [value]);
  const describedBy = useId();
  const errorLine = error && error.line >= 1 && error.line <= lines.length ? error.line : null;
  return (
    <div className={`code-editor${error ? " has-error" : ""}`}>
      <label htmlFor={id} className="code-label">{label}</label>
      <div className="code-scroll">
        <div className="code-grid">
          <div className="code-gutter" aria-hidden="true">
            {lines.map((_, i) => (
              <div key={i} className={`gutter-line${errorLine === i + 1 ? " error" : ""}`}>{i + 1}</div>
            ))}
          </div>
          <div className="code-area">
            <pre className="code-highlight" aria-hidden="true">
              {lines.map((line, i) => (
                <div key={i} className={`code-line${errorLine === i + 1 ? " error" : ""}`} data-line={i + 1}>
                  {highlightLine(line, i).map((token, j) => (
                    <span key={j} className={`tok-${token.kind}`}>{token.text}</span>
                  ))}
                  {errorLine === i + 1 && (
                    <span className="line-message" data-testid="line-error">
                      {"  ◀ "}{error?.column ? `column ${error.column}: ` : ""}{error?.message}
                    </span>
                  )}
                  {"\n"}
                </div>
              ))}
            </pre>
            <textarea
              id={id}
              className="code-input"
              value={value}
              spellCheck={false}
              autoCapitalize="off"
              autoComplete="off"
              wrap="off"
              rows={lines.length + 1}
              aria-invalid={error ? true : undefined}
              aria-describedby={error ? describedBy : undefined}
              onChange={(event) => onChange(event.target.value)}
            />
          </div>
        </div>
      </div>
      {error && (
        <p className="field-error" id={describedBy} role="alert">
          {error.line ? `Line ${error.line}${error.column ? `, column ${error.column}` : ""}: ` : ""}{error.message}
        </p>
      )}
    </div>
  );
}
