// The stability card: are the explanations settled? Rank correlation and top-k overlap of the global
// importance between consecutive steps, and against the last step.

import { lineColors } from '../colors';
import { formatValue } from '../dom';
import { fileStem } from '../export';
import { Stability } from '../model';
import { Card, Table } from './card';
import { Lines } from './lines';

const SETTLED_RHO = 0.9;
const SETTLED_OVERLAP = 0.8;

export interface StabilityEvents {
  settled: number | null; // the step from which every next step keeps the ranking
  shift: { step: number; rho: number } | null; // the step whose ranking moved most from the step before
}

/** When the ranking settled and where it shifted most, from the consecutive-step series. */
export function stabilityEvents(s: Stability): StabilityEvents {
  const keeps = (i: number) =>
    (s.spearman_previous[i] ?? -Infinity) >= SETTLED_RHO && (s.topk_previous[i] ?? -Infinity) >= SETTLED_OVERLAP;
  let first = s.steps.length;
  while (first > 1 && keeps(first - 1)) first--;
  const settled = first < s.steps.length ? s.steps[first - 1] : null;
  let shift: StabilityEvents['shift'] = null;
  s.spearman_previous.forEach((rho, i) => {
    if (rho !== null && rho < SETTLED_RHO && (!shift || rho < shift.rho)) shift = { step: s.steps[i], rho };
  });
  return { settled, shift };
}

export class StabilityView {
  readonly card: Card;
  private readonly lines = new Lines(170);
  private current: { stability: Stability; run: string; method: string } | null = null;

  constructor() {
    this.card = new Card({
      id: 'stability',
      title: 'Explanation stability',
      fileName: () => fileStem('stability', this.current?.run ?? '', this.current?.method ?? ''),
      table: () => this.table(),
    });
  }

  /** Forgets what was drawn (the data failed to load): exports and step marks have nothing to show. */
  clear(): void {
    this.current = null;
    this.card.clear();
  }

  show(stability: Stability, run: string, method: string, width: number): void {
    this.current = { stability, run, method };
    const { k, steps } = stability;
    const events = stabilityEvents(stability);
    const annotations = [];
    if (events.settled !== null) annotations.push({ step: events.settled, text: 'settled' });
    if (events.shift) annotations.push({ step: events.shift.step, text: 'largest shift' });
    this.lines.draw(
      {
        series: [
          { name: 'ρ, previous step', color: lineColors[0], steps, values: stability.spearman_previous },
          { name: `top-${k} overlap, previous step`, color: lineColors[1], steps, values: stability.topk_previous },
          { name: 'ρ, last step', color: lineColors[0], steps, values: stability.spearman_last, dashed: true },
          { name: `top-${k} overlap, last step`, color: lineColors[1], steps, values: stability.topk_last, dashed: true },
        ],
        yLabel: 'agreement',
        yDomain: [Math.min(0, ...stability.spearman_previous.filter((v): v is number => v !== null && Number.isFinite(v))), 1],
        annotations,
      },
      width,
    );
    const settled = steps.length < 2
      ? `Only ${steps.length === 1 ? `step ${steps[0]} is` : 'no step is'} logged so far: stability needs two consecutive steps.`
      : events.settled !== null
      ? `Settled from step ${events.settled} (ρ ≥ ${SETTLED_RHO} and top-${k} overlap ≥ ${SETTLED_OVERLAP} at every later step).`
      : 'Not settled yet: the ranking still moves between consecutive steps.';
    const shift = steps.length >= 2 && events.shift ? ` Largest shift at step ${events.shift.step} (ρ = ${formatValue(events.shift.rho)}).` : '';
    this.card.note.textContent = `Spearman rank correlation (ρ) and top-${k} overlap of the mean |attribution| ranking. ${settled}${shift}`;
    this.card.figure.replaceChildren(this.lines.element);
    this.card.markDrawn(`${run}|${method}|${k}`);
  }

  private table(): Table | null {
    if (!this.current) return null;
    const s = this.current.stability;
    return {
      header: ['step', 'spearman_previous', `top${s.k}_previous`, 'spearman_last', `top${s.k}_last`],
      rows: s.steps.map((step, i) => [step, s.spearman_previous[i], s.topk_previous[i], s.spearman_last[i], s.topk_last[i]]),
    };
  }
}
