// A hover box inside a figure. Lines are set as text, never HTML.

import { el } from '../dom';

export class Tooltip {
  readonly element = el('div', { class: 'tooltip', role: 'tooltip', 'data-no-export': true, hidden: true });

  constructor(figure: HTMLElement) {
    figure.append(this.element);
  }

  /** Shows `lines` near (x, y), in the figure's coordinates. */
  show(lines: string[], x: number, y: number): void {
    this.element.replaceChildren(...lines.map((line) => el('div', {}, line)));
    this.element.hidden = false;
    const parent = this.element.parentElement!;
    const box = this.element.getBoundingClientRect();
    const left = Math.min(x + 14, parent.clientWidth - box.width - 4);
    const top = y + 14 + box.height > parent.clientHeight ? y - box.height - 8 : y + 14;
    this.element.style.left = `${Math.max(0, left)}px`;
    this.element.style.top = `${Math.max(0, top)}px`;
  }

  hide(): void {
    this.element.hidden = true;
  }
}
