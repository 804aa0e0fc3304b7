// Drives the text views of the Attributions tab in Chromium against a real TensorBoard serving text runs, and
// reports what works, as one JSON line: {"checks": {"<name>": {"ok": bool, "detail": ...}}, "screenshots": [...],
// "dialogs": [...]}. Every check runs even when an earlier one fails. tests/test_text_frontend.py writes the
// runs, starts TensorBoard and asserts each check; what is drawn is compared with what the server sends.
//
//   node tests/text.mjs '<json config>'
// config: {url, route (the plugin's route prefix URL), screenshots, downloads, runs: {text, text_b}, method,
//          input, tokens: [[...] per probe], padding: [[...] per probe], missing_in_b: [words run B lacks]}

import fs from 'node:fs';
import path from 'node:path';
import { launch, openTab } from './browser.mjs';

const config = JSON.parse(process.argv[2]);
const checks = {};
const screenshots = [];
const pageErrors = [];
const dialogs = [];
const { text, text_b: textB } = config.runs;
const { method, input } = config;

async function check(name, body) {
  const started = Date.now();
  try {
    const detail = await body();
    checks[name] = { ok: true, detail: detail ?? null, ms: Date.now() - started };
  } catch (error) {
    checks[name] = { ok: false, detail: String(error?.stack ?? error), ms: Date.now() - started };
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** The plugin's answer to `route?params`, straight from the server. */
async function route(name, params) {
  const response = await fetch(`${config.route}${name}?${new URLSearchParams(params)}`);
  if (!response.ok) throw new Error(`${name}: ${response.status} ${await response.text()}`);
  return response.json();
}

const rgbOf = (fill) => (fill.match(/\d+/g) ?? []).slice(0, 3).map(Number);
const close = (a, b) => Math.abs(a - b) <= 1e-6 + 1e-3 * Math.abs(b);

const browser = await launch({ width: 1280, height: 1400 });
const { page } = browser;
page.on('pageerror', (error) => pageErrors.push(error.message));
page.on('dialog', async (dialog) => {
  dialogs.push(dialog.message());
  await dialog.dismiss();
});
let frame;

const hash = (params) => Object.entries(params).map(([k, v]) => `&${k}=${encodeURIComponent(v)}`).join('');
const drawn = (card, prefix) => frame.waitForSelector(`#${card}[data-drawn^="${prefix}"]:not([aria-busy])`, { timeout: 20000 });
// Every card done loading, so nothing moves under a click (the later cards load after the evolution card).
const settled = () => frame.waitForFunction(() => !document.querySelector('.card[aria-busy]')
  && ![...document.querySelectorAll('.card .status')].some((s) => s.textContent.startsWith('Loading')), null, { timeout: 20000 });
/**
 * Shows `probe` of the text run, signed or not, through the tab's own controls (one page load for the whole
 * session), and waits until the probe explorer has drawn it anew.
 */
async function showProbe(probe, signed) {
  await frame.waitForSelector('#probe svg.token-text g');
  const probeChanges = await frame.inputValue('select[name=probe]') !== String(probe);
  const signChanges = await frame.isChecked('input[name=signed]') !== signed;
  if (!probeChanges && !signChanges) return;
  await frame.$eval('#probe svg.token-text g', (g) => g.setAttribute('data-stale', ''));
  if (probeChanges) await frame.selectOption('select[name=probe]', String(probe));
  if (signChanges) await frame.setChecked('input[name=signed]', signed);
  await drawn('probe', `${text}|${probe}|${method}|`);
  await frame.waitForFunction(() => document.querySelector('#probe svg.token-text g') && !document.querySelector('#probe svg.token-text g[data-stale]'),
    null, { timeout: 20000 });
}
/** What the probe explorer's text shows: one entry per chip. */
const chips = () => frame.$$eval('#probe svg.token-text g', (gs) => gs.map((g) => ({
  kind: g.getAttribute('class'),
  position: Number(g.getAttribute('data-position')),
  count: Number(g.getAttribute('data-count')),
  token: g.getAttribute('data-token'),
  value: g.getAttribute('data-value'),
  text: g.querySelector('text').textContent,
  fill: g.querySelector('rect').getAttribute('fill'),
  opacity: g.getAttribute('opacity'),
  transform: g.getAttribute('transform'),
  width: Number(g.querySelector('rect').getAttribute('width')),
})));
async function shoot(card, name) {
  const file = path.join(config.screenshots, `${name}.png`);
  await frame.$eval('nav.controls', (nav) => { nav.style.position = 'static'; });
  await frame.locator(`#${card}`).screenshot({ path: file });
  await frame.$eval('nav.controls', (nav) => { nav.style.position = ''; });
  screenshots.push(file);
}
const shownStep = async () => Number((await frame.getAttribute('#probe', 'data-drawn')).split('|').pop());

try {
  const answer = (probe, signed) => route('probe', { run: text, method, input, probe, signed: signed ? 1 : 0 });

  await check('text_probe_draws_the_tokens', async () => {
    frame = await openTab(page, config.url, hash({ run: text, runs: '', method, input, probe: 0, signed: 1, compare: '', by: 'word' }));
    await drawn('probe', `${text}|0|${method}|`);
    const served = await answer(0, true);
    assert(JSON.stringify(served.tokens) === JSON.stringify(config.tokens[0]), `the server's tokens ${served.tokens} are not the logged ones`);
    const got = (await chips()).filter((c) => c.kind === 'token');
    const expected = served.tokens.filter((_, p) => !served.padding[p]);
    assert(got.length === expected.length, `${got.length} token chips for ${expected.length} tokens`);
    assert(got.every((c, i) => c.text === expected[i] && c.token === expected[i] && c.position === i), `chips ${JSON.stringify(got.map((c) => c.text))}`);
    return got.map((c) => c.text).join(' ');
  });

  await check('tokens_render_as_text', async () => {
    await showProbe(1, true);
    const got = await chips();
    const hostile = config.tokens[1].filter((t) => t.includes('<'));
    for (const token of hostile) {
      const chip = got.find((c) => c.token === token);
      assert(chip, `no chip for ${token}`);
      const shown = chip.text.replace(/␣/g, ' ');
      assert(shown === token || (shown.endsWith('…') && token.startsWith(shown.slice(0, -1))), `${token} drawn as ${chip.text}`);
    }
    const injected = await frame.evaluate(() => ({
      scripts: [...document.querySelectorAll('script')].filter((s) => s.textContent.includes('alert')).length,
      images: document.querySelectorAll('img').length,
      texts: [...document.querySelectorAll('#probe svg.token-text text')].map((t) => t.childNodes.length === 1 && t.firstChild.nodeType === 3),
    }));
    assert(injected.scripts === 0 && injected.images === 0, `a token became markup: ${JSON.stringify(injected)}`);
    assert(injected.texts.every(Boolean), 'a token chip holds something other than one text node');
    assert(dialogs.length === 0, `a token ran: ${dialogs}`);
    return hostile;
  });

  await check('colours_follow_signed_values', async () => {
    await showProbe(3, true);
    const served = await answer(3, true);
    const values = served.attributions[served.steps.length - 1];
    const got = (await chips()).filter((c) => c.kind === 'token');
    for (const c of got) assert(close(Number(c.value), values[c.position]), `position ${c.position}: drew ${c.value}, served ${values[c.position]}`);
    const reds = got.filter((c) => Number(c.value) > 0.1).map((c) => rgbOf(c.fill));
    const blues = got.filter((c) => Number(c.value) < -0.1).map((c) => rgbOf(c.fill));
    assert(reds.length && blues.length, 'the probe should hold tokens pushing both ways');
    assert(reds.every(([r, , b]) => r > b + 40), `positive tokens not red: ${JSON.stringify(reds)}`);
    assert(blues.every(([r, , b]) => b > r + 40), `negative tokens not blue: ${JSON.stringify(blues)}`);
    // Further from zero, further from white.
    const byMagnitude = [...got].sort((a, b) => Math.abs(Number(a.value)) - Math.abs(Number(b.value)));
    const whiteness = byMagnitude.map((c) => Math.min(...rgbOf(c.fill)));
    assert(whiteness.every((w, i) => i === 0 || w <= whiteness[i - 1] + 2), `colour not monotone in |value|: ${whiteness}`);
    return got.map((c) => `${c.token}=${Number(c.value).toFixed(2)}:${c.fill}`).join(' ');
  });

  await check('colours_follow_magnitudes', async () => {
    await showProbe(3, false);
    const served = await answer(3, false);
    const values = served.attributions[served.steps.length - 1];
    const got = (await chips()).filter((c) => c.kind === 'token');
    assert(got.every((c) => close(Number(c.value), values[c.position]) && Number(c.value) >= 0), 'unsigned chips are not the served |attribution|');
    const luminance = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
    const sorted = [...got].sort((a, b) => Number(a.value) - Number(b.value)).map((c) => luminance(rgbOf(c.fill)));
    assert(sorted.every((l, i) => i === 0 || l <= sorted[i - 1] + 1), `larger |attribution| is not darker: ${sorted}`);
    assert(sorted[0] - sorted[sorted.length - 1] > 60, `the ramp barely changes: ${sorted}`);
    const legend = await frame.$$eval('#probe .color-legend', (g) => g.map((x) => x.getAttribute('data-title')));
    assert(legend.includes('|attribution|'), `legend ${legend}`);
  });

  await check('padding_is_dimmed_and_counted', async () => {
    await showProbe(0, true);
    const padded = config.padding[0].filter(Boolean).length;
    const got = await chips();
    const pads = got.filter((c) => c.kind === 'pad');
    assert(pads.length >= 1, 'no padding chip');
    assert(pads.reduce((n, c) => n + c.count, 0) === padded, `padding chips cover ${pads.map((c) => c.count)} of ${padded} positions`);
    assert(pads.every((c) => c.fill === 'none' && c.opacity === '0.7' && c.value === null), `padding drawn like a token: ${JSON.stringify(pads)}`);
    assert(pads[0].text === `padding ×${padded}`, `padding chip says ${pads[0].text}`);
    const key = await frame.textContent('#probe .padding-key text');
    assert(key.includes(`${padded} of ${config.padding[0].length} positions`), `padding key: ${key}`);
    const cells = await frame.$$eval('#probe svg.token-strip rect.pad-cell', (rects) => rects.map((r) => r.getAttribute('fill')));
    assert(cells.length > 0 && cells.every((f) => f.startsWith('url(#padding-hatch')), `padding cells in the strip: ${cells.slice(0, 3)}`);
    // The probe with no padding has no padding key.
    await showProbe(2, true);
    assert((await frame.$$('#probe .padding-key')).length === 0, 'a probe without padding shows a padding key');
    return { padded, key };
  });

  await check('long_text_wraps', async () => {
    await showProbe(2, true);
    const got = await chips();
    const width = Number(await frame.getAttribute('#probe svg.token-text', 'width'));
    const lines = new Set(got.map((c) => c.transform.match(/,([\d.]+)\)/)[1]));
    assert(got.length === config.tokens[2].length, `${got.length} chips for ${config.tokens[2].length} tokens`);
    assert(lines.size >= 2, `a ${got.length}-token text on one line`);
    const right = Math.max(...got.map((c) => Number(c.transform.match(/\(([\d.]+),/)[1]) + c.width));
    assert(right <= width, `chips run past the panel: ${right} > ${width}`);
    const bands = await frame.$$eval('#probe svg.token-strip g.strip-tokens', (g) => g.length);
    assert(bands >= 2, `the strip did not wrap with the text (${bands} bands)`);
    return { lines: lines.size, bands };
  });

  await check('slider_changes_the_step', async () => {
    await showProbe(3, true);
    const served = await answer(3, true);
    const last = await chips();
    assert(await shownStep() === served.steps[served.steps.length - 1], 'the probe does not open at its last step');
    await frame.locator('input[name=step]').fill('0');
    await drawn('probe', `${text}|3|${method}|${served.steps[0]}`);
    const first = await chips();
    const values = served.attributions[0];
    assert(first.filter((c) => c.kind === 'token').every((c) => close(Number(c.value), values[c.position])), 'step 0 shows other values');
    assert(first.some((c, i) => c.fill !== last[i].fill), 'the colours did not change with the step');
    const selected = await frame.$$eval('#probe svg.token-strip .selected-step', (rects) => rects.map((r) => r.parentElement.getAttribute('data-step')));
    assert(selected.length >= 1 && selected.every((s) => Number(s) === served.steps[0]), `strip marks step ${selected}`);
  });

  await check('strip_shows_every_step', async () => {
    await showProbe(0, true);
    const served = await answer(0, true);
    const rows = await frame.$$eval('#probe svg.token-strip g.strip-row', (gs) => gs.map((g) => Number(g.getAttribute('data-step'))));
    assert(JSON.stringify(rows) === JSON.stringify(served.steps), `strip rows ${rows} for steps ${served.steps}`);
    const cells = await frame.$$eval('#probe svg.token-strip g.strip-row', (gs) => gs.map((g) =>
      [...g.querySelectorAll('rect.cell')].map((r) => [Number(r.getAttribute('data-position')), Number(r.getAttribute('data-value'))])));
    cells.forEach((row, s) => row.forEach(([p, v]) => assert(close(v, served.attributions[s][p]), `step ${served.steps[s]} position ${p}: ${v}`)));
    return rows;
  });

  await check('strip_row_opens_its_step', async () => {
    await showProbe(0, true);
    const served = await answer(0, true);
    const target = served.steps[2];
    await frame.locator(`#probe svg.token-strip g.strip-row[data-step="${target}"] rect.cell`).first().click();
    await drawn('probe', `${text}|0|${method}|${target}`);
    assert(await frame.inputValue('input[name=step]') === '2', 'the slider did not follow the strip');
    return target;
  });

  await check('tooltip_names_token_position_value', async () => {
    await showProbe(0, true);
    const served = await answer(0, true);
    const last = served.steps.indexOf(await shownStep()); // the step looked at last stays
    const position = served.tokens.indexOf('great');
    await frame.locator(`#probe svg.token-text g.token[data-position="${position}"]`).hover();
    const tip = frame.locator('#probe .text-panel .tooltip');
    await tip.waitFor({ state: 'visible', timeout: 5000 });
    const lines = await tip.locator('div').allTextContents();
    assert(lines.includes('token: great') && lines.includes(`position: ${position}`) && lines.includes(`step: ${served.steps[last]}`), `tooltip ${lines}`);
    const value = Number(lines.find((l) => l.startsWith('attribution: ')).split(': ')[1]);
    assert(Math.abs(value - served.attributions[last][position]) < 1e-3 * Math.abs(served.attributions[last][position]) + 1e-6, `tooltip value ${value}`);
    const pad = served.padding.indexOf(true);
    await frame.locator(`#probe svg.token-text g.pad[data-position="${pad}"]`).hover();
    const padLines = await tip.locator('div').allTextContents();
    assert(padLines.some((l) => l.includes('padding')) && padLines.includes('no attribution'), `padding tooltip ${padLines}`);
    await page.mouse.move(0, 0);
    return { lines, padLines };
  });

  await check('evolution_ranks_the_servers_words', async () => {
    await showProbe(0, false);
    await drawn('evolution', `${text}|${method}|`);
    assert(await frame.isVisible('#evolution select[name=by]'), 'no rank-by toggle for a text input');
    assert(await frame.inputValue('#evolution select[name=by]') === 'word', 'a text input does not open ranked by word');
    const served = await route('evolution', { run: text, method, input, target: 'all', signed: 0, by: 'word' });
    const expected = served.order.slice(0, 30).map((i) => served.layout.names[i]);
    const rows = await frame.$$eval('#evolution .row-labels text', (t) => t.map((x) => x.querySelector('title').textContent));
    assert(JSON.stringify(rows) === JSON.stringify(expected), `rows ${rows} vs the server's words ${expected}`);
    assert(rows[0] === 'boring' || rows[0] === 'great', `the strongest words are not first: ${rows.slice(0, 3)}`);
    const note = await frame.textContent('#evolution .note');
    assert(note.startsWith('Words ordered'), note);
    await shoot('evolution', 'text_evolution');
    return rows;
  });

  await check('evolution_ranks_positions', async () => {
    await frame.selectOption('#evolution select[name=by]', 'position');
    await drawn('evolution', `${text}|${method}|`);
    await frame.waitForSelector('#evolution[data-drawn$="|position"]:not([aria-busy])');
    const served = await route('evolution', { run: text, method, input, target: 'all', signed: 0 });
    const name = (i) => served.layout.names ? served.layout.names[i] : served.layout.name_pattern.replace('{0}', String(i));
    const expected = served.order.slice(0, 30).map(name);
    const rows = await frame.$$eval('#evolution .row-labels text', (t) => t.map((x) => x.querySelector('title').textContent));
    assert(JSON.stringify(rows) === JSON.stringify(expected), `rows ${rows} vs the server's positions ${expected}`);
    const remembered = await page.evaluate(() => location.hash);
    assert(remembered.includes('by=position'), `the choice is not remembered: ${remembered}`);
    await frame.selectOption('#evolution select[name=by]', 'word');
    await frame.waitForSelector('#evolution[data-drawn$="|word"]:not([aria-busy])');
  });

  await check('probe_menu_shows_first_words', async () => {
    await showProbe(0, true);
    await frame.waitForFunction(() => document.querySelector('select[name=probe] option')?.textContent.includes('·'), null, { timeout: 10000 });
    const labels = await frame.$$eval('select[name=probe] option', (o) => o.map((x) => x.textContent));
    assert(labels.length === config.tokens.length, `${labels.length} probes in the menu`);
    // The menu may say more about each probe (its label, prediction...); the words come with it.
    const words = (label) => label.split(' · ').filter((part) => !/^(probe|label|predicts|change) |^⇄/.test(part)).join(' · ');
    assert(labels[0].startsWith('probe 0') && words(labels[0]) === 'the movie was great', `probe 0 is labelled ${labels[0]}`);
    assert(words(labels[1]).startsWith('<script>alert(3)</script> the'), `probe 1 is labelled ${labels[1]}`);
    assert(words(labels[2]).endsWith('…') && words(labels[2]).length <= 34, `a long probe's label is not cut: ${labels[2]}`);
    return labels;
  });

  await check('compared_runs_line_up_by_word', async () => {
    await showProbe(0, false);
    await frame.click('button.runs-button');
    await frame.setChecked(`input[name=compare-run][value="${textB}"]`, true);
    await drawn('evolution', `${text}+${textB}|${method}|`);
    await settled();
    const [file] = await Promise.all([page.waitForEvent('download'), frame.click('#evolution button[data-export=CSV]')]);
    const target = path.join(config.downloads, file.suggestedFilename());
    await file.saveAs(target);
    const rows = fs.readFileSync(target, 'utf8').trim().split(/\r?\n/).map((r) => r.split(','));
    assert(rows[0].slice(0, 3).join() === 'run,word,occurrences', `CSV header ${rows[0]}`);
    const a = await route('evolution', { run: text, method, input, target: 'all', signed: 0, by: 'word' });
    const b = await route('evolution', { run: textB, method, input, target: 'all', signed: 0, by: 'word' });
    const last = (answer, word) => answer.importance[answer.importance.length - 1][answer.layout.names.indexOf(word)];
    const row = (run, word) => rows.find((r) => r[0] === run && r[1] === word);
    for (const word of config.missing_in_b) {
      const inB = row(textB, word);
      assert(inB && inB.slice(3).every((v) => v === ''), `run B lacks ${word} but the CSV has ${inB}`);
      assert(close(Number(row(text, word).at(-1)), last(a, word)), `run A's ${word}`);
    }
    assert(close(Number(row(textB, 'great').at(-1)), last(b, 'great')), `run B's "great" is not B's value: ${row(textB, 'great')}`);
    const labels = await frame.$$eval('#evolution .panel', (panels) => panels.length);
    assert(labels === 3, `${labels} panels: the two runs and their difference`);
    if (!(await frame.isVisible('.run-list'))) await frame.click('button.runs-button');
    await frame.setChecked(`input[name=compare-run][value="${textB}"]`, false);
    await frame.click('#probe h2'); // closes the run list
    await drawn('evolution', `${text}|${method}|`);
    return row(textB, 'great');
  });

  await check('csv_of_a_text_probe', async () => {
    await showProbe(3, true);
    const last = await frame.getAttribute('input[name=step]', 'max');
    await frame.locator('input[name=step]').fill(last);
    await drawn('probe', `${text}|3|${method}|${(await answer(3, true)).steps.at(-1)}`);
    await shoot('probe', 'text_probe');
    await showProbe(0, true);
    await settled();
    const [file] = await Promise.all([page.waitForEvent('download'), frame.click('#probe button[data-export=CSV]')]);
    const target = path.join(config.downloads, file.suggestedFilename());
    await file.saveAs(target);
    const rows = fs.readFileSync(target, 'utf8').trim().split(/\r?\n/).map((r) => r.split(','));
    assert(rows[0].join() === 'method,step,feature,token,padding,value', `CSV header ${rows[0]}`);
    const great = rows.find((r) => r[0] === method && r[3] === 'great');
    const pad = rows.find((r) => r[0] === method && r[4] === 'true');
    assert(great && great[4] === 'false' && pad && Number(pad[5]) === 0, `CSV rows ${great} / ${pad}`);
    const svg = await frame.$$eval('#probe svg.token-text', (s) => s.length);
    assert(svg === 1, 'the text is not SVG (exports would miss it)');
  });

  await check('two_methods_side_by_side', async () => {
    await showProbe(2, true);
    await frame.selectOption('select[name=compare]', 'saliency');
    await drawn('probe', `${text}|2|${method}+saliency|`);
    const panels = await frame.$$eval('#probe svg.token-text', (svgs) => svgs.map((s) => ({
      width: Number(s.getAttribute('width')),
      right: Math.max(...[...s.querySelectorAll('g')].map((g) => Number(g.getAttribute('transform').match(/\(([\d.]+),/)[1]) + Number(g.querySelector('rect').getAttribute('width')))),
      values: [...s.querySelectorAll('g.token')].map((g) => Number(g.getAttribute('data-value'))),
    })));
    assert(panels.length === 2, `${panels.length} text panels for two methods`);
    assert(panels.every((p) => p.right <= p.width), `a half-width panel's text runs past it: ${JSON.stringify(panels.map((p) => [p.right, p.width]))}`);
    // The run logs saliency as half of integrated_gradients: the second panel shows its own values.
    assert(panels[1].values.every((v, i) => close(v, panels[0].values[i] / 2)), 'the second panel does not show the second method');
    await frame.selectOption('select[name=compare]', '');
    await drawn('probe', `${text}|2|${method}|`);
    return panels.map((p) => p.width);
  });

  await check('dark_theme_text', async () => {
    await showProbe(1, true);
    await frame.$eval('#probe svg.token-text g', (g) => g.setAttribute('data-stale', ''));
    await page.evaluate(() => document.body.classList.add('dark-mode')); // TensorBoard's own dark-mode switch
    await frame.waitForFunction(() => document.body.dataset.theme === 'dark' && !document.querySelector('#probe svg.token-text g[data-stale]'),
      null, { timeout: 10000 });
    const got = await chips();
    const pad = got.find((c) => c.kind === 'pad');
    const padText = await frame.$eval('#probe svg.token-text g.pad text', (t) => t.getAttribute('fill'));
    assert(padText === '#bdbdbd', `padding text ${padText} on the dark card`);
    const strip = await frame.$eval('#probe svg.token-strip g.strip-tokens g.token text', (t) => t.getAttribute('fill'));
    assert(strip === '#e0e0e0', `strip tokens drawn in ${strip} on the dark card`);
    const file = path.join(config.downloads, 'text_probe_dark.png'); // looked at, not in the docs
    await frame.locator('#probe').screenshot({ path: file });
    screenshots.push(file);
    await page.evaluate(() => document.body.classList.remove('dark-mode'));
    await frame.waitForFunction(() => document.body.dataset.theme === 'light', null, { timeout: 10000 });
    return { pad: pad?.text };
  });

  await check('no_page_errors', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
  });
} finally {
  await browser.close();
}

process.stdout.write(`${JSON.stringify({ checks, screenshots, dialogs })}\n`);
