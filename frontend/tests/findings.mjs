// Drives the findings, quality and probe-menu parts of the Attributions tab in Chromium and reports, as one
// JSON line: {"checks": {"<name>": {"ok": bool, "detail": ...}}, "screenshots": [...]}. Every check runs even
// when an earlier one fails. tests/test_findings_frontend.py starts TensorBoard over a run the callback wrote
// and passes the server's own answers, which the page must show.
//
//   node tests/findings.mjs '<json config>'
// config: {url, screenshots, runs: {shortcut, quiet}, findings: <findings answer>, probes: <probes answer of
//          `method`/`input` at the last step>, quality: {method: <quality answer>}, method, input}

import path from 'node:path';
import { launch, openTab } from './browser.mjs';

const config = JSON.parse(process.argv[2]);
const checks = {};
const screenshots = [];
const pageErrors = [];
const { shortcut, quiet } = config.runs;
const found = config.findings.findings;

async function check(name, body) {
  const start = performance.now();
  try {
    const detail = await body();
    checks[name] = { ok: true, detail: detail ?? null };
  } catch (error) {
    checks[name] = { ok: false, detail: String(error?.stack ?? error) };
  }
  checks[name].ms = Math.round(performance.now() - start);
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const drawn = (frame, card, prefix) => frame.waitForSelector(`#${card}[data-drawn^="${prefix}"]:not([aria-busy])`, { timeout: 20000 });

async function shoot(frame, card, name) {
  const file = path.join(config.screenshots, `${name}.png`);
  await frame.$eval('nav.controls', (nav) => { nav.style.position = 'static'; }); // else it covers the card's top
  await page.mouse.move(0, 0); // no hover highlight in the picture
  await frame.locator(`#${card}`).screenshot({ path: file });
  await frame.$eval('nav.controls', (nav) => { nav.style.position = ''; });
  screenshots.push(file);
}

/** The list's buttons, every finding shown. */
async function listAll(frame) {
  const more = await frame.$('#findings button.more');
  if (more && !(await more.isHidden()) && /Show all/.test(await more.textContent())) await more.click();
  return frame.$$eval('#findings .finding-list button.finding', (buttons) => buttons.map((b) => b.textContent));
}

/** Whether `card` sits at the top of the iframe's viewport, just under the sticky selection bar. */
function atTop(frame, card) {
  return frame.$eval(`#${card}`, (element) => {
    const nav = document.querySelector('nav.controls').getBoundingClientRect().bottom;
    const top = element.getBoundingClientRect().top;
    return { top, nav, scrolled: window.scrollY, ok: top >= nav - 1 && top <= nav + 40 };
  });
}

async function clickFinding(frame, finding) {
  await listAll(frame);
  const index = found.indexOf(finding);
  await frame.click(`#findings .finding-list button.finding[data-index="${index}"]`);
}

const started = performance.now();
const browser = await launch({ width: 1280, height: 900 });
const { page } = browser;
page.on('pageerror', (error) => pageErrors.push(error.message));
let frame;

try {
  frame = await openTab(page, config.url);

  await check('findings_card_is_first_and_lists_the_server_findings', async () => {
    await drawn(frame, 'findings', `${shortcut}|`);
    const first = await frame.$eval('.cards', (cards) => cards.firstElementChild.id);
    assert(first === 'findings', `the first card is #${first}`);
    const messages = found.map((f) => f.message);
    const shown = await frame.$$eval('#findings .finding-list button.finding', (buttons) => buttons.map((b) => b.textContent));
    assert(same(shown, messages.slice(0, 8)), `listed ${JSON.stringify(shown)}, expected the server's first 8 of ${messages.length}`);
    const all = await listAll(frame);
    assert(same(all, messages), `after "Show all": ${all.length} of ${messages.length} listed`);
    await frame.click('#findings button.more'); // back to the short list
    const note = await frame.textContent('#findings .note');
    assert(note.startsWith(`${found.length} findings`), `note: ${note}`);
    await shoot(frame, 'findings', 'findings');
    return { findings: found.length, note };
  });

  await check('timeline_has_a_lane_per_kind_and_a_mark_per_event', async () => {
    const lanes = await frame.$$eval('#findings svg.findings-timeline text[data-lane]', (texts) => texts.map((t) => t.dataset.lane));
    const expected = config.findings.kinds.filter((k) => found.some((f) => f.kind === k));
    assert(same(lanes, expected), `lanes ${JSON.stringify(lanes)}, expected ${JSON.stringify(expected)}`);
    const marks = await frame.$$eval('#findings g.finding-mark', (gs) => gs.map((g) => ({ lane: g.dataset.lane, step: Number(g.dataset.step), count: Number(g.dataset.count) })));
    const groups = new Set(found.map((f) => `${f.kind}@${f.step}`));
    assert(marks.length === groups.size, `${marks.length} marks for ${groups.size} (kind, step) pairs`);
    assert(marks.every((m) => groups.has(`${m.lane}@${m.step}`)), `marks off their events: ${JSON.stringify(marks)}`);
    assert(marks.reduce((a, m) => a + m.count, 0) === found.length, 'the marks do not count every finding');
    // Marks of later steps sit further right.
    const xs = await frame.$$eval('#findings g.finding-mark circle', (cs) => cs.map((c) => [Number(c.closest('g').dataset.step), Number(c.getAttribute('cx'))]));
    assert(xs.every(([s, x]) => xs.every(([s2, x2]) => (s < s2 ? x < x2 : true))), `marks out of step order: ${JSON.stringify(xs)}`);
    return { lanes, marks: marks.length };
  });

  await check('timeline_lanes_by_method', async () => {
    await frame.selectOption('select[name=finding-lanes]', 'method');
    const lanes = await frame.$$eval('#findings svg.findings-timeline text[data-lane]', (texts) => texts.map((t) => t.dataset.lane));
    const expected = new Set(found.map((f) => (f.method === null ? 'predictions' : f.method.split(',').join(' & '))));
    assert(lanes.length === expected.size && lanes.every((l) => expected.has(l)), `lanes ${JSON.stringify(lanes)}, expected ${JSON.stringify([...expected])}`);
    await frame.selectOption('select[name=finding-lanes]', 'kind');
    return lanes;
  });

  await check('probe_menu_shows_labels_predictions_and_flips', async () => {
    await drawn(frame, 'probe', `${shortcut}|`);
    const method = await frame.inputValue('select[name=method]');
    assert(method === config.method, `the tab opened on ${method}, expected ${config.method}`);
    await frame.waitForFunction(() => Array.from(document.querySelectorAll('select[name=probe] option')).every((o) => / predicts /.test(o.textContent)), null, { timeout: 10000 });
    const options = await frame.$$eval('select[name=probe] option', (os) => os.map((o) => ({ value: Number(o.value), text: o.textContent, flipped: o.dataset.flipped })));
    const entries = config.probes.probes;
    assert(options.length === entries.length, `${options.length} options for ${entries.length} probes`);
    for (const entry of entries) {
      const option = options.find((o) => o.value === entry.probe);
      const { text } = option;
      assert(text.startsWith(`probe ${entry.probe} · label ${entry.label_name}`), `probe ${entry.probe}: ${text}`);
      assert(text.includes(`predicts ${entry.prediction_name}${entry.correct ? ' ✓' : ' ✗'}`), `probe ${entry.probe} prediction: ${text}`);
      assert(text.includes('⇄ flipped') === entry.flipped && option.flipped === String(entry.flipped), `probe ${entry.probe} flip mark: ${text}`);
      if (entry.change !== null) assert(text.includes(`change ${entry.change.toFixed(2)}`), `probe ${entry.probe} change: ${text}`);
    }
    const flipped = entries.filter((e) => e.flipped).length;
    assert(flipped > 0, 'no probe flipped in the run: the check would prove nothing');
    return { flipped, first: options[0].text };
  });

  await check('probe_menu_sorts_by_change', async () => {
    await frame.selectOption('select[name=probe-order]', 'change');
    const expected = [...config.probes.probes].sort((a, b) => (b.change ?? -Infinity) - (a.change ?? -Infinity) || a.probe - b.probe).map((e) => String(e.probe));
    await frame.waitForFunction((order) => Array.from(document.querySelectorAll('select[name=probe] option')).map((o) => o.value).join() === order, expected.join(), { timeout: 5000 });
    // The neighbour buttons follow the menu's order.
    await frame.selectOption('select[name=probe]', expected[0]);
    await frame.click('button[aria-label="next probe"]');
    await drawn(frame, 'probe', `${shortcut}|${expected[1]}|`);
    await frame.selectOption('select[name=probe-order]', 'index');
    const back = await frame.$$eval('select[name=probe] option', (os) => os.map((o) => o.value));
    assert(same(back, config.probes.probes.map((e) => String(e.probe))), `by index: ${back}`);
    return expected.slice(0, 5);
  });

  await check('clicking_a_flip_opens_its_probe_at_its_step', async () => {
    const flip = found.find((f) => f.kind === 'prediction_flip' && f.open.view === 'probe' && f.open.probe !== 0 && f.open.step !== found[found.length - 1].step)
      ?? found.find((f) => f.kind === 'prediction_flip');
    assert(flip, 'no prediction flip among the findings');
    await frame.evaluate(() => window.scrollTo(0, 0));
    await clickFinding(frame, flip);
    const { probe, step, method } = flip.open;
    await frame.waitForSelector(`#probe[data-drawn="${shortcut}|${probe}|${method}|${step}"]:not([aria-busy])`, { timeout: 20000 });
    assert((await frame.inputValue('select[name=probe]')) === String(probe), 'the probe menu does not name the probe');
    assert((await frame.textContent('#probe .step-label')) === `step ${step}`, 'the probe explorer is not at the step');
    await frame.waitForFunction(() => window.scrollY > 0, null, { timeout: 5000 });
    const where = await atTop(frame, 'probe');
    assert(where.ok, `the probe card is not scrolled to: ${JSON.stringify(where)}`);
    const current = await frame.$eval('#findings button.finding[aria-current]', (b) => b.textContent);
    assert(current === flip.message, `marked ${current}`);
    // The menu now gives the predictions at that step.
    await frame.waitForFunction((s) => document.querySelector('select[name=probe]').title.startsWith(`Predictions at step ${s} `), step, { timeout: 5000 });
    return { open: flip.open, where };
  });

  await check('clicking_a_top_k_event_opens_its_method_in_the_evolution_card', async () => {
    const now = await frame.inputValue('select[name=method]');
    const entered = found.find((f) => f.kind === 'topk_enter' && f.open.method !== now) ?? found.find((f) => f.kind === 'topk_enter');
    await frame.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await clickFinding(frame, entered);
    await drawn(frame, 'evolution', `${shortcut}|${entered.open.method}|`);
    assert((await frame.inputValue('select[name=method]')) === entered.open.method, 'the method is not selected');
    await frame.waitForTimeout(100);
    const where = await atTop(frame, entered.open.view);
    assert(where.ok, `the ${entered.open.view} card is not scrolled to: ${JSON.stringify(where)}`);
    await frame.selectOption('select[name=method]', config.method);
    await drawn(frame, 'evolution', `${shortcut}|${config.method}|`);
    return { open: entered.open, where };
  });

  await check('quality_card_draws_the_figures', async () => {
    await drawn(frame, 'quality', `${shortcut}|`);
    const answers = Object.values(config.quality);
    const labels = answers[0].labels;
    const charts = await frame.$$eval('#quality .quality-chart', (cs) => cs.map((c) => ({
      figure: c.dataset.figure,
      title: c.querySelector('svg.title text').textContent,
      lines: Array.from(c.querySelectorAll('g.series path')).filter((p) => (p.getAttribute('d') ?? '').length > 20).map((p) => ({ name: p.dataset.series, dashed: p.getAttribute('stroke-dasharray') })),
    })));
    for (const figure of ['deletion_auc', 'insertion_auc', 'sanity_spearman']) {
      const chart = charts.find((c) => c.figure === figure);
      assert(chart, `no ${figure} chart: ${JSON.stringify(charts.map((c) => c.figure))}`);
      assert(chart.title === labels[figure], `${figure} titled ${chart.title}, the server says ${labels[figure]}`);
      const solid = chart.lines.filter((l) => !l.dashed).map((l) => l.name).sort();
      assert(same(solid, Object.keys(config.quality).sort()), `${figure}: lines ${JSON.stringify(chart.lines)}`);
      if (figure !== 'sanity_spearman') assert(chart.lines.filter((l) => l.dashed).length === answers.length, `${figure}: no random-order baseline per method`);
    }
    const offered = await frame.$$eval('select[name=quality-figure] option', (os) => os.map((o) => [o.value, o.textContent]));
    const others = [...new Set(answers.flatMap((a) => Object.keys(a.figures)))]
      .filter((f) => !['deletion_auc', 'insertion_auc', 'deletion_auc_random', 'insertion_auc_random', 'sanity_spearman'].includes(f));
    assert(same(offered.map((o) => o[0]).sort(), others.sort()), `offered ${JSON.stringify(offered)}, the server holds ${others}`);
    assert(offered.every(([f, label]) => label === labels[f]), `labels ${JSON.stringify(offered)}`);
    await frame.selectOption('select[name=quality-figure]', 'entropy');
    await frame.waitForSelector('#quality .quality-chart[data-figure=entropy]');
    const missing = await frame.textContent('#quality .quality-missing');
    assert(/Seed figures/.test(missing), `what is missing: ${missing}`);
    await shoot(frame, 'quality', 'findings_quality');
    return { charts: charts.map((c) => c.figure), missing };
  });

  await check('stability_draws_the_noise_band', async () => {
    await drawn(frame, 'stability', `${shortcut}|${config.method}|`);
    const band = await frame.$eval('#stability path.band', (p) => ({ d: (p.getAttribute('d') ?? '').length, name: p.dataset.band }));
    assert(band.d > 20, `the band is empty: ${JSON.stringify(band)}`);
    const legend = await frame.$$eval('#stability .legend text', (ts) => ts.map((t) => t.textContent));
    assert(legend.some((t) => t.startsWith('noise band of ρ')), `legend: ${legend}`);
    const note = await frame.textContent('#stability .note');
    assert(/noise band/.test(note), `note: ${note}`);
    await shoot(frame, 'stability', 'findings_noise_band');
    return band;
  });

  await check('a_run_without_findings_says_what_was_checked', async () => {
    await frame.selectOption('select[name=run]', quiet);
    await frame.waitForSelector(`#findings[data-drawn="${quiet}|0"]`, { timeout: 20000 });
    const text = await frame.textContent('#findings .no-findings');
    assert(text.startsWith('No findings beyond the noise floor'), text);
    assert(/Checked 1 method \(saliency\) over 4 logged steps for: ranking drift; entered the top-k; left the top-k/.test(text), text);
    await drawn(frame, 'quality', `${quiet}|`);
    const missing = await frame.textContent('#quality .quality-missing');
    assert(/quality="all"/.test(missing), `quality card of a run without faithfulness: ${missing}`);
    await frame.selectOption('select[name=run]', shortcut);
    await drawn(frame, 'findings', `${shortcut}|`);
    return text;
  });

  await check('dark_theme_redraws_the_cards', async () => {
    const fill = () => frame.$eval('#findings svg.findings-timeline text[data-lane]', (t) => t.getAttribute('fill'));
    const light = await fill();
    await page.evaluate(() => document.body.classList.add('dark-mode'));
    await frame.waitForFunction(() => document.body.dataset.theme === 'dark');
    await frame.waitForFunction((before) => document.querySelector('#findings svg.findings-timeline text[data-lane]')?.getAttribute('fill') !== before, light, { timeout: 5000 });
    const dark = await fill();
    await shoot(frame, 'findings', 'findings_dark');
    const band = await frame.$eval('#stability path.band', (p) => (p.getAttribute('d') ?? '').length);
    await page.evaluate(() => document.body.classList.remove('dark-mode'));
    await frame.waitForFunction(() => document.body.dataset.theme === 'light');
    assert(light !== dark && band > 20, `lane label ${light} -> ${dark}, band ${band}`);
    return { light, dark };
  });

  await check('no_page_errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
  });
} finally {
  await browser.close();
}
console.log(JSON.stringify({ checks, screenshots, ms: Math.round(performance.now() - started) }));
