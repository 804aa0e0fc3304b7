// The tab's entry point. TensorBoard loads this module into the tab's iframe and calls render().

import { App } from './app';
import { STYLE } from './style';
import { PROBE_MENU_STYLE } from './views/controls';
import { FINDINGS_STYLE } from './views/findings';
import { QUALITY_STYLE } from './views/quality';

export async function render(): Promise<void> {
  const style = document.createElement('style');
  style.textContent = STYLE + FINDINGS_STYLE + QUALITY_STYLE + PROBE_MENU_STYLE;
  document.head.append(style);
  const app = new App();
  document.body.append(app.element);
  await app.start();
}
