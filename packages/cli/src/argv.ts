/**
 * locksmithctl compatibility for the command line: locksmithctl takes Go-style single-dash flags
 * (`-endpoint URL`, `-etcd-cafile=FILE`). They are rewritten to sluicectl's flags before commander
 * parses the arguments, so scripts written for locksmithctl keep working.
 */

/** locksmithctl's global flags and the sluicectl flag each one becomes. */
export const LOCKSMITH_FLAGS: Readonly<Record<string, string>> = {
  endpoint: '--endpoints',
  'etcd-cafile': '--cacert',
  'etcd-certfile': '--cert',
  'etcd-keyfile': '--key',
  'etcd-username': '--user',
  'etcd-password': '--password',
  group: '--group',
};

/**
 * Rewrites locksmithctl flags in `argv` (without the node and script paths): `-endpoint URL`,
 * `-endpoint=URL` and `--endpoint URL` become `--endpoints URL`, and likewise for the other
 * flags in LOCKSMITH_FLAGS; `-help` becomes `--help`. Everything after `--` is left alone.
 */
export function rewriteLocksmithFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    // Go's flag package (locksmithctl) takes -help and -h.
    if (arg === '-help') {
      out.push('--help');
      continue;
    }
    const match = /^--?([a-z-]+)(=.*)?$/.exec(arg);
    const name = match?.[1];
    const target = name === undefined ? undefined : LOCKSMITH_FLAGS[name];
    // `--group` is already sluicectl's own flag: only the single-dash form needs rewriting.
    if (target === undefined || arg === target || arg.startsWith(`${target}=`)) {
      out.push(arg);
      continue;
    }
    out.push(match?.[2] ? `${target}${match[2]}` : target);
  }
  return out;
}
