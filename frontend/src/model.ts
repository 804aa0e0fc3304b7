// Typed access to the plugin's routes (docs/http_api.md). The iframe's <base href> is the plugin's route
// prefix, so relative URLs reach /data/plugin/tb_xai/<route>.

export type Num = number | null;

/** How a map is laid out and what its elements are called: sent by the server (its one owner). */
export interface MapLayout {
  kind: 'vector' | 'sequence' | 'picture' | 'grid' | string;
  map_shape: number[];
  /** Drawn as a 2-D picture, else one row per element (flattened row-major). */
  picture: boolean;
  /** One name per element of a 1-D map, else null. */
  names: string[] | null;
  /** For a map of two or more axes: `{d}` stands for the element's index along axis d. */
  name_pattern: string | null;
}

export interface InputInfo {
  input: string;
  modality: string;
  feature_names: string[];
  attribution_shape: number[];
  map_shape: number[];
  layout: MapLayout;
  steps: number[];
  dropped_steps: number[];
  config: Record<string, unknown>;
  /** Changes whenever the tag is written. */
  version: string;
}

export interface MethodInfo {
  method: string;
  inputs: InputInfo[];
  failures: { step: number; message: string }[];
}

export interface RunInfo {
  run: string;
  /** Changes whenever any tb_xai tag of the run is written. */
  version: string;
  /** When any tb_xai tag of the run was last written (seconds since the epoch), null if never. */
  last_written: number | null;
  probe_count: number | null;
  has_labels: boolean;
  class_names: string[];
  /** The explained head's number of classes (1: one output per probe, e.g. a regression). */
  class_count: number;
  output_name: string;
  prediction_steps: number[];
  scalar_runs: string[];
  /** Per sibling scalar run, a token that changes whenever it is written. */
  scalar_versions: Record<string, string>;
  /** Changes whenever the callback writes one of the run's quality scalars (servers that send it). */
  quality_version?: string;
  methods: MethodInfo[];
}

export interface Evolution {
  run: string;
  modality: string;
  signed: boolean;
  steps: number[];
  map_shape: number[];
  layout: MapLayout;
  importance: Num[][];
  probe_counts: number[];
  /** Element indices by |importance| at the last step, largest first (the same as tb_xai's `ranking`). */
  order: number[];
  range: [number, number] | null;
  /** Ranked by word (a text input's `by=word`): each word's non-padding occurrences over the probes. */
  counts?: number[];
}

export interface Probe {
  method: string;
  probe: number;
  modality: string;
  signed: boolean;
  steps: number[];
  map_shape: number[];
  layout: MapLayout;
  attributions: Num[][];
  range: [number, number] | null;
  prediction_steps: number[];
  predictions: Num[][];
  targets: (number | null)[];
  class_names: string[];
  label: number | number[] | null;
  input_shape: number[] | null;
  input_values: Num[] | null;
  input_range: [number, number] | null;
  /** A text input's token strings and padding positions ([T] each); absent for other modalities. */
  tokens?: string[];
  padding?: boolean[];
}

export interface Stability {
  k: number;
  steps: number[];
  spearman_previous: Num[];
  topk_previous: Num[];
  spearman_last: Num[];
  topk_last: Num[];
  /** The noise floor per step (servers before it: absent). */
  noise?: StabilityNoise;
}

export interface AgreementPair {
  methods: [string, string];
  steps: number[];
  spearman: Num[];
  topk: Num[];
}

export interface Agreement {
  input: string;
  k: number;
  methods: string[];
  pairs: AgreementPair[];
}

export interface ScalarSeries {
  steps: number[];
  values: Num[];
}

export interface Scalars {
  runs: Record<string, Record<string, ScalarSeries>>;
}

// ---- domain rules the views share -------------------------------------------------------------------------

/** The name of element `index` (flat, row-major) of a map: from the server's names, or its naming rule. */
export function elementName(layout: MapLayout, index: number): string {
  if (layout.names) return layout.names[index];
  const shape = layout.map_shape;
  const coords = new Array<number>(shape.length);
  let rest = index;
  for (let d = shape.length - 1; d >= 0; d--) {
    coords[d] = rest % shape[d];
    rest = Math.floor(rest / shape[d]);
  }
  return (layout.name_pattern ?? '').replace(/\{(\d+)\}/g, (_, d: string) => String(coords[Number(d)]));
}

/** Every element's name, flattened row-major. */
export function elementNames(layout: MapLayout): string[] {
  if (layout.names) return layout.names;
  const total = layout.map_shape.reduce((a, b) => a * b, 1);
  return Array.from({ length: total }, (_, i) => elementName(layout, i));
}

/** [height, width] of a map drawn as a picture. */
export function pictureSize(layout: MapLayout): [number, number] {
  return [layout.map_shape[0] ?? 1, layout.map_shape.slice(1).reduce((a, b) => a * b, 1)];
}

/** Whether the run has data to draw: at least one method with an attribution. */
export function hasData(run: RunInfo): boolean {
  return run.methods.some((m) => m.inputs.length > 0);
}

/** The run to open first: the most recently written run with data (ties and unknown times: the first listed). */
export function latestRun(runs: RunInfo[]): RunInfo | undefined {
  const usable = runs.filter(hasData);
  return usable.reduce<RunInfo | undefined>((best, r) => (!best || (r.last_written ?? -Infinity) > (best.last_written ?? -Infinity) ? r : best), undefined);
}

/** Whether a `target` class filter means anything for the run: its explained head has two or more classes. */
export function hasClasses(run: RunInfo): boolean {
  return Math.max(run.class_count, run.class_names.length) > 1;
}

/** The steps both runs logged, ascending: runs are aligned by step value, not by position. */
export function commonSteps(a: number[], b: number[]): number[] {
  const inB = new Set(b);
  return a.filter((s) => inB.has(s));
}

/** `[min, max]` over several answers' ranges (for one colour scale shared by every run), null if none. */
export function sharedRange(ranges: ([number, number] | null)[]): [number, number] | null {
  const known = ranges.filter((r): r is [number, number] => r !== null);
  if (!known.length) return null;
  return [Math.min(...known.map((r) => r[0])), Math.max(...known.map((r) => r[1]))];
}

export interface Difference {
  steps: number[];
  /** Per common step, B minus A, element by element (null where either is null). */
  importance: Num[][];
  range: [number, number] | null;
}

/** Run B's mean map minus run A's at every step both logged (maps of one layout). */
export function difference(a: Evolution, b: Evolution): Difference {
  if (a.importance[0] && b.importance[0] && a.importance[0].length !== b.importance[0].length) {
    throw new Error(`the runs' maps differ in shape (${a.map_shape.join('x')} and ${b.map_shape.join('x')}): no difference to take`);
  }
  const steps = commonSteps(a.steps, b.steps);
  const rowA = new Map(a.steps.map((s, i) => [s, a.importance[i]]));
  const rowB = new Map(b.steps.map((s, i) => [s, b.importance[i]]));
  let lo = Infinity;
  let hi = -Infinity;
  const importance = steps.map((s) => {
    const ra = rowA.get(s)!;
    const rb = rowB.get(s)!;
    return ra.map((va, i) => {
      const vb = rb[i];
      if (va === null || vb === null) return null;
      const d = vb - va;
      if (d < lo) lo = d;
      if (d > hi) hi = d;
      return d;
    });
  });
  return { steps, importance, range: lo <= hi ? [lo, hi] : null };
}

type Params = Record<string, string | number | boolean | undefined>;

/**
 * Answers by URL, each with the data version it was fetched at: an answer is reused only while its run's
 * version is unchanged, so steps written since (a run still training) are fetched on the next reload. At most
 * CACHE_ENTRIES answers are kept, the least recently used dropped first.
 */
const cache = new Map<string, { version: string; answer: Promise<unknown> }>();
export const CACHE_ENTRIES = 32;

/** How many answers the cache holds now (for tests). */
export function cacheSize(): number {
  return cache.size;
}

/** The version of the Keras scalars next to `run`: changes whenever any of its sibling scalar runs is written. */
export function scalarsVersion(run: RunInfo): string {
  return run.scalar_runs.map((name) => `${name}=${run.scalar_versions[name] ?? ''}`).join(',');
}

function routeUrl(route: string, params: Params): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    query.set(key, typeof value === 'boolean' ? (value ? '1' : '0') : String(value));
  }
  const qs = query.toString();
  return `./${route}${qs ? `?${qs}` : ''}`;
}

/** GETs a route's JSON; with a `version`, reuses the answer fetched at that version. */
async function getJson<T>(route: string, params: Params, version?: string): Promise<T> {
  const url = routeUrl(route, params);
  const hit = version === undefined ? undefined : cache.get(url);
  if (hit && hit.version === version) {
    cache.delete(url); // most recently used last
    cache.set(url, hit);
    return hit.answer as Promise<T>;
  }
  const pending = fetch(url).then(async (response) => {
    if (!response.ok) throw new Error(`${route}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  });
  if (version !== undefined) {
    const entry = { version, answer: pending };
    cache.delete(url); // replaces the answer of an older version: one entry per URL
    cache.set(url, entry);
    while (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    pending.catch(() => cache.get(url) === entry && cache.delete(url));
  }
  return pending;
}

/** The runs holding tb_xai data. Never cached: a reload picks up runs and steps written since. */
export async function fetchRuns(): Promise<RunInfo[]> {
  return (await getJson<{ runs: RunInfo[] }>('runs', {})).runs;
}

export interface Query {
  run: string;
  method: string;
  input: string;
  target: string;
  signed: boolean;
  /** The run's `version` when the query was made. */
  version: string;
}

/** What a text input's evolution ranks: token positions (the route's default) or words. */
export type RankBy = 'position' | 'word';

export function fetchEvolution(q: Query, by: RankBy = 'position'): Promise<Evolution> {
  return getJson('evolution', {
    run: q.run, method: q.method, input: q.input, target: q.target, signed: q.signed, by: by === 'word' ? by : undefined,
  }, q.version);
}

export function fetchProbe(q: Query, probe: number): Promise<Probe> {
  return getJson('probe', { run: q.run, method: q.method, input: q.input, probe, signed: q.signed }, q.version);
}

/** `version`: `analysisVersion` of the run (the noise band reads the seed figures the callback logged). */
export function fetchStability(q: Query, k: number, version: string = q.version): Promise<Stability> {
  return getJson('stability', { run: q.run, method: q.method, input: q.input, target: q.target, k }, version);
}

export function fetchAgreement(q: Query, k: number): Promise<Agreement> {
  return getJson('agreement', { run: q.run, input: q.input, target: q.target, k }, q.version);
}

/** The Keras scalars next to `run`, at `version` (`scalarsVersion`). */
export function fetchScalars(run: string, version: string): Promise<Scalars> {
  return getJson('scalars', { run }, version);
}

/** A text input's probes as token strings, and which positions are padding ([probes][positions] each). */
export interface Tokens {
  run: string;
  input: string;
  tokens: string[][];
  padding: boolean[][];
}

export function fetchTokens(q: Query): Promise<Tokens> {
  return getJson('tokens', { run: q.run, input: q.input }, q.version);
}

// ---- findings, quality and the probe menu (docs/http_api.md: findings, quality, probes) ---------------------

/** Where a finding shows best: the card, and the selection that shows it (null: keep what is selected). */
export interface FindingOpen {
  view: 'evolution' | 'probe' | 'stability' | 'agreement' | 'quality' | string;
  method: string | null;
  input: string | null;
  step: number | null;
  probe: number | null;
}

/** One event the server found beyond the noise floor (the same as `run.findings()`, plus `open`). */
export interface Finding {
  step: number;
  kind: string;
  method: string | null;
  input: string | null;
  feature: string | null;
  feature_index: number | null;
  probe: number | null;
  value: number | null;
  noise: number | null;
  message: string;
  open: FindingOpen;
}

export interface Findings {
  run: string;
  findings: Finding[];
  /** Every kind the server looks for, in its fixed order (also the kinds with no finding). */
  kinds: string[];
}

export interface Quality {
  run: string;
  method: string;
  steps: number[];
  /** Figure name -> one value per step (null where it was not logged or is undefined). */
  figures: Record<string, Num[]>;
  /** Figure name -> what the server calls it. */
  labels: Record<string, string>;
  /** Figure name -> the value findings compare it with (e.g. the drift alarm on ndcg_reference). */
  thresholds: Record<string, number | null>;
}

export interface ProbeEntry {
  probe: number;
  label: number | number[] | null;
  label_name: string | null;
  prediction: number | null;
  prediction_name: string | null;
  correct: boolean | null;
  flipped: boolean;
  flip_steps: number[];
  /** 1 - Spearman of the probe's |map| between the first logged step and `step`; null where unknown. */
  change: number | null;
}

export interface ProbeMenu {
  run: string;
  step: number;
  probes: ProbeEntry[];
}

export interface StabilityNoise {
  /** Bootstrap over probes: the 5% quantile of ρ / nDCG@k with resampled probe sets. */
  spearman_floor: Num[];
  ndcg_floor: Num[];
  /** Sampling methods: ρ / nDCG@k between two seeds (the latest logged), null where unknown. */
  seed_spearman?: Num[];
  seed_ndcg?: Num[];
}

/** The version answers that read the run's quality scalars are cached under (findings, quality, stability). */
export function analysisVersion(run: RunInfo): string {
  return `${run.version}|${run.quality_version ?? ''}`;
}

/** The run's findings, at `analysisVersion(run)`. */
export function fetchFindings(run: RunInfo): Promise<Findings> {
  return getJson('findings', { run: run.run }, analysisVersion(run));
}

/** `q` names the run and method; `version` is `analysisVersion` of the run. */
export function fetchQuality(q: Query, version: string): Promise<Quality> {
  return getJson('quality', { run: q.run, method: q.method }, version);
}

/** The probe menu at `step` (the last logged step when null). */
export function fetchProbeMenu(q: Query, step: number | null): Promise<ProbeMenu> {
  return getJson('probes', { run: q.run, method: q.method, input: q.input, step: step ?? undefined }, q.version);
}
