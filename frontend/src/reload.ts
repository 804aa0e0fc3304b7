// Hears TensorBoard's reloads. TensorBoard 2.x loads this tab once into an iframe and never calls render()
// again: its reload button and auto-reload timer call a `reload()` that an iframe does not have, and only tell
// iframed plugins through its plugin IPC, a MessagePort the iframe offers with the "experimental.bootstrap"
// message. Each reload, once TensorBoard has fetched its data, arrives as "experimental.DataReloaded".

const BOOTSTRAP = 'experimental.bootstrap';
export const DATA_RELOADED = 'experimental.DataReloaded';

interface IpcMessage {
  type: string;
  id: number;
  payload: unknown;
  error: string | null;
  isReply: boolean;
}

/** Calls `onReload` after every TensorBoard reload (button or timer). Does nothing outside TensorBoard. */
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
    if (message.type === DATA_RELOADED) onReload();
  });
  channel.port1.start();
  window.parent.postMessage(BOOTSTRAP, '*', [channel.port2]);
}
