#!/usr/bin/env node
/**
 * Builds the dependency-free bundle: `dist-bundle/sluiced.mjs`, `dist-bundle/sluicectl.mjs`,
 * `dist-bundle/locksmithctl.mjs` and `dist-bundle/sluice-fleetlock.mjs`, single files that run with a plain `node` (>= 20.19) and no
 * node_modules next to them. They are what `deploy/install.sh`, the Butane config and the
 * Containerfile ship.
 *
 *   node scripts/bundle.mjs                  # writes dist-bundle/
 *   node scripts/bundle.mjs --outdir /tmp/b  # somewhere else (the deploy tests do this)
 *
 * Everything is bundled: the workspace packages (from their TypeScript source, through the
 * `source` export condition), etcd3, @grpc/grpc-js, protobufjs, pino, dbus-next and the rest.
 * The output is ESM because both entry points use top-level await; a banner gives the CommonJS
 * dependencies the `require` they expect.
 *
 * Two things in the sources read files at run time, which a single file cannot carry. This script
 * rewrites both while bundling and fails loudly if either rewrite stops matching:
 *
 * - etcd3 loads its gRPC service definitions with `loadSync(`${__dirname}/../proto/rpc.proto`)`.
 *   The .proto files (and the ones they import) are parsed here, at build time, and the call
 *   becomes `fromJSON(<the parsed definitions>)`, @grpc/proto-loader's in-memory equivalent. The
 *   script checks that both give the same services and methods.
 * - `sluiced`, `sluicectl` and `sluice-fleetlock` read their version from `../package.json` next to their source. The
 *   read becomes the package.json text itself (name and version only).
 *
 * Optional native modules that dbus-next tries inside try/catch (`usocket` for abstract sockets,
 * `x11` for session-bus discovery) stay external: neither is needed for the system bus.
 */
import { chmodSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);

const { values: args } = parseArgs({
  options: { outdir: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
});
if (args.help) {
  process.stdout.write('usage: node scripts/bundle.mjs [--outdir DIR]   (default: dist-bundle/)\n');
  process.exit(0);
}
const outdir = resolve(args.outdir ?? join(root, 'dist-bundle'));

/** The programs, by output name. */
const ENTRIES = {
  sluiced: join(root, 'packages/agent/src/main.ts'),
  sluicectl: join(root, 'packages/cli/src/main.ts'),
  // locksmithctl's commands and flags on sluice's keys, for scripts written for locksmith.
  locksmithctl: join(root, 'packages/cli/src/locksmithctl-main.ts'),
  // The FleetLock server for Zincati and Flatcar clients.
  'sluice-fleetlock': join(root, 'packages/fleetlock/src/main.ts'),
};

// ---------------------------------------------------------------------------------------------
// etcd3's .proto files, parsed now

const etcd3Dir = dirname(require.resolve('etcd3/package.json'));
const protoFile = join(etcd3Dir, 'proto/rpc.proto');
const protoLoader = createRequire(join(etcd3Dir, 'package.json'))('@grpc/proto-loader');
const protobuf = createRequire(require.resolve('@grpc/proto-loader'))('protobufjs');
/** The options etcd3 passes to loadSync; keepCase also decides the field names in the JSON. */
const PROTO_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

function etcdProtoJson() {
  const parsed = new protobuf.Root().loadSync(protoFile, { keepCase: true });
  parsed.resolveAll();
  const json = parsed.toJSON();
  // The embedded form must describe exactly what etcd3 would have loaded from disk.
  const methods = (definition) =>
    Object.entries(definition)
      .filter(([, value]) => typeof value === 'object' && !('format' in value))
      .flatMap(([service, value]) => Object.keys(value).map((m) => `${service}.${m}`))
      .sort()
      .join('\n');
  const fromDisk = methods(protoLoader.loadSync(protoFile, PROTO_OPTIONS));
  const fromJson = methods(protoLoader.fromJSON(json, PROTO_OPTIONS));
  if (fromDisk !== fromJson || !fromJson.includes('etcdserverpb.KV.Range')) {
    throw new Error(`the embedded etcd protos differ from ${relative(root, protoFile)}`);
  }
  return json;
}

/** etcd3's runtime read of rpc.proto, as its compiled connection-pool.js spells it. */
const PROTO_LOAD = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`,/;

/** `readFileSync(new URL('../package.json', import.meta.url), 'utf8')`, however it is wrapped. */
const VERSION_READ =
  /readFileSync\(\s*new URL\(\s*['"]\.\.\/package\.json['"],\s*import\.meta\.url\s*\),\s*['"]utf-?8['"],?\s*\)/;

/** @type {import('esbuild').Plugin} */
const inlineRuntimeFiles = {
  name: 'sluice-inline-runtime-files',
  setup(b) {
    b.onLoad({ filter: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (file) => {
      const source = readFileSync(file.path, 'utf8');
      if (!PROTO_LOAD.test(source)) {
        throw new Error(
          `${file.path}: etcd3 no longer loads rpc.proto as expected; update ${PROTO_LOAD}`,
        );
      }
      const json = JSON.stringify(etcdProtoJson());
      return {
        contents: source.replace(PROTO_LOAD, () => `(0, proto_loader_1.fromJSON)(${json},`),
        loader: 'js',
      };
    });
    b.onLoad(
      { filter: /[\\/]packages[\\/](agent|cli|fleetlock)[\\/]src[\\/][^\\/]+\.ts$/ },
      (file) => {
        const source = readFileSync(file.path, 'utf8');
        if (!VERSION_READ.test(source)) return undefined;
        const pkg = JSON.parse(readFileSync(join(dirname(file.path), '../package.json'), 'utf8'));
        const text = JSON.stringify(JSON.stringify({ name: pkg.name, version: pkg.version }));
        return {
          contents: source.replace(new RegExp(VERSION_READ, 'g'), () => text),
          loader: 'ts',
        };
      },
    );
  },
};

// ---------------------------------------------------------------------------------------------
// The build

const banner = [
  '// sluice: a single-file bundle made by scripts/bundle.mjs; run it with node >= 20.19.',
  "import { createRequire as __sluiceCreateRequire } from 'node:module';",
  "import { dirname as __sluiceDirname } from 'node:path';",
  "import { fileURLToPath as __sluiceFileURLToPath } from 'node:url';",
  // CommonJS dependencies expect these; the lazy paths that use __dirname (gRPC's channelz and
  // ORCA protos, pino's transport workers) are never taken by sluice, and would fail with a
  // missing-file error naming the path rather than a ReferenceError.
  'const require = __sluiceCreateRequire(import.meta.url);',
  'const __filename = __sluiceFileURLToPath(import.meta.url);',
  'const __dirname = __sluiceDirname(__filename);',
].join('\n');

rmSync(outdir, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ENTRIES,
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  conditions: ['source'],
  mainFields: ['module', 'main'],
  external: ['usocket', 'x11'],
  banner: { js: banner },
  plugins: [inlineRuntimeFiles],
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
  logOverride: { 'direct-eval': 'silent' },
});

// Fail if anything still reaches for files beside the bundle.
for (const name of Object.keys(ENTRIES)) {
  const file = join(outdir, `${name}.mjs`);
  const text = readFileSync(file, 'utf8');
  if (!text.startsWith('#!/usr/bin/env node\n')) throw new Error(`${file}: no shebang line`);
  chmodSync(file, 0o755);
  for (const [pattern, what] of [
    [/\.\.\/package\.json/, 'a read of ../package.json'],
    [/rpc\.proto`/, "etcd3's rpc.proto read"],
  ]) {
    if (pattern.test(text)) throw new Error(`${file} still contains ${what}`);
  }
  const bytes = result.metafile.outputs[relative(root, file)]?.bytes ?? text.length;
  const shown = file.startsWith(`${process.cwd()}/`) ? relative(process.cwd(), file) : file;
  process.stdout.write(`${shown}  ${(bytes / 1024).toFixed(0)} KiB\n`);
}
