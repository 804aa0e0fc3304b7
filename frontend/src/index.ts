// The tab's entry point. TensorBoard loads this module into the tab's iframe and calls render().

import { App } from './app';
import { STYLE } from './style';

export async function render(): Promise<void> {
  const style = document.createElement('style');
  style.textContent = STYLE;
  document.head.append(style);
  const app = new App();
  document.body.append(app.element);
  await app.start();
}
