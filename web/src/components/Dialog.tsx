// A modal dialog on the native <dialog>: focus is trapped by the browser, Escape closes it.
import { type ReactNode, useEffect, useRef } from "react";

export interface DialogProps {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ReactNode;
  id?: string;
  /** Escape and the close button do nothing (sign-in has nowhere to go back to). */
  required?: boolean;
}

export function Dialog({ open, title, onClose, children, id, required = false }: DialogProps) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) {
      // jsdom has no showModal: fall back to the open attribute (component tests)
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    } else if (!open && dialog.open) dialog.close();
  }, [open]);
  const titleId = `${id ?? "dialog"}-title`;
  return (
    <dialog
      ref={ref}
      id={id}
      aria-labelledby={titleId}
      onCancel={(event) => {
        event.preventDefault();
        if (!required) onClose();
      }}
    >
      {open && (
        <div className="dialog-body">
          <header className="dialog-head">
            <h2 id={titleId}>{title}</h2>
            {!required && (
              <button type="button" className="icon" aria-label="Close dialog" onClick={onClose}>×</button>
            )}
          </header>
          {children}
        </div>
      )}
    </dialog>
  );
}

export interface ConfirmProps {
  open: boolean;
  title: string;
  confirmLabel: string;
  danger?: boolean;
  busy?: boolean;
  /** The action cannot be taken now (the dialog's text says why). */
  disabled?: boolean;
  onConfirm: () => void;
  onClose: () => void;
  children: ReactNode;
}

export function ConfirmDialog({ open, title, confirmLabel, danger = false, busy = false, disabled = false, onConfirm, onClose, children }: ConfirmProps) {
  return (
    <Dialog open={open} title={title} onClose={onClose} id="confirm-dialog">
      <div className="dialog-text">{children}</div>
      <div className="dialog-actions">
        <button type="button" onClick={onClose}>Cancel</button>
        <button type="button" className={danger ? "danger" : "primary"} disabled={busy || disabled} onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </Dialog>
  );
}
