// Bundles the tab into one ES module that the plugin serves at ./index.js. Deterministic: the same sources
// and the locked packages always give the same bytes, so CI can rebuild and compare with the committed file.
import * as esbuild from 'esbuild';
import { fileURLToPath } from 'node:url';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

await esbuild.build({
  entryPoints: [here('./src/index.ts')],
  outfile: here('../tb_xai/plugin/static/index.js'),
  bundle: true,
  format: 'esm',
  target: 'es2020',
  minify: true,
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});
