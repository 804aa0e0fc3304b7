// What every card of the tab is to the app: it fetches what it needs for a selection, then draws it at a
// width (again on resize or a theme change). app.ts keeps a registry of them and runs them alike.

import { Query, RunInfo } from '../model';
import { Selection } from '../selection';
import { Card } from './card';

/** One run shown: its listing, its colour (the same in every card) and its query. */
export interface Shown {
  info: RunInfo;
  color: string;
  query: Query;
}

export interface ViewContext {
  selection: Selection;
  /** The run explained by single-run cards; the baseline (A) when runs are compared. */
  primary: Shown;
  /** The runs drawn, the primary first: one, or two and more when runs are compared. */
  runs: Shown[];
  /** The run the probe explorer explains: the primary, or another compared run chosen in that card. */
  explained: Shown;
  /** Class names known for the primary run. */
  classNames: string[];
}

export type Draw = (width: number) => void;

export interface View {
  readonly card: Card;
  /** Fetches what the view shows for `context`; resolves to the function that draws it. */
  load(context: ViewContext): Promise<Draw>;
  /** Forgets what was drawn (its data failed to load): no chart, no note, nothing to export. */
  clear(): void;
}

export const comparing = (context: ViewContext) => context.runs.length > 1;
