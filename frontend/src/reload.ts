// Hears TensorBoard's reloads. TensorBoard 2.x loads this tab once into an iframe and never calls render()
// again: its reload button and auto-reload timer call a `reload()` that an iframe does not have, and only tell
// iframed plugins through its plugin IPC, a MessagePort the iframe offers with the "experimental.bootstrap"
// message. Each reload, once TensorBoard has fetched its data, arrives as "experimental.DataReloaded"; a change
// of TensorBoard's list of runs (a run appeared or went) as "experimental.RunsChanged" with every run's name.
// TensorBoard 2.21 sends an iframed plugin the names of all runs, not which ones its run selector has checked
// (that state stays inside its Angular store), so the tab keeps its own choice of runs to compare.

const BOOTSTRAP = 'experimental.bootstrap';
export const DATA_RELOADED = 'experimental.DataReloaded';
export const RUNS_CHANGED = 'experimental.RunsChanged';

interface IpcMessage {
  type: string;
  id: number;
  payload: unknown;
  error: string | null;
  isReply: boolean;
}

/**
 * Calls `onReload` after every TensorBoard reload (button or timer) and whenever TensorBoard's run list
 * changes. Does nothing outside TensorBoard.
 */
export function onTensorBoardReload(onReload: () => void): void {
  if (window.parent === window) return;
  const channel = new MessageChannel();
  channel.port1.addEventListener('message', (event: MessageEvent) => {
    let message: IpcMessage;
    try {
      message = JSON.parse(String(event.data)) as IpcMessage;
    } catch {
      return;
    }
    if (message.isReply) return;
    // TensorBoard waits for a reply to every message it sends.
    channel.port1.postMessage(JSON.stringify({ type: message.type, id: message.id, payload: null, error: null, isReply: true }));
    if (message.type === DATA_RELOADED || message.type === RUNS_CHANGED) onReload();
  });
  channel.port1.start();
  window.parent.postMessage(BOOTSTRAP, '*', [channel.port2]);
}
