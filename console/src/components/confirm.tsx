import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { ErrorNote } from './ui';

/**
 * A modal confirmation (native <dialog>): says what will happen, optionally asks for a reason and
 * for a word typed back, and shows the API's answer if the action fails.
 */
export function ConfirmDialog({
  title,
  children,
  confirmLabel,
  typeToConfirm,
  askReason,
  onConfirm,
  onClose,
}: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  typeToConfirm?: string;
  askReason?: boolean;
  onConfirm: (reason: string) => Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [typed, setTyped] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    ref.current?.showModal();
  }, []);

  const ready = !typeToConfirm || typed === typeToConfirm;
  return (
    <dialog ref={ref} class="dialog" aria-label={title} onClose={onClose}>
      <form
        method="dialog"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            await onConfirm(reason.trim());
            ref.current?.close();
          } catch (err) {
            setError(err);
          } finally {
            setBusy(false);
          }
        }}
      >
        <h2>{title}</h2>
        <div class="dialog-body">{children}</div>
        {askReason && (
          <label>
            Reason (kept in the audit trail)
            <input value={reason} onInput={(e) => setReason(e.currentTarget.value)} />
          </label>
        )}
        {typeToConfirm && (
          <label>
            Type <code class="mono">{typeToConfirm}</code> to confirm
            <input value={typed} onInput={(e) => setTyped(e.currentTarget.value)} autoComplete="off" />
          </label>
        )}
        <ErrorNote error={error} />
        <div class="dialog-actions">
          <button type="button" class="btn btn-plain" onClick={() => ref.current?.close()}>
            Cancel
          </button>
          <button type="submit" class="btn btn-danger" disabled={!ready || busy}>
            {confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}
