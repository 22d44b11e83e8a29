/**
 * `sluicectl completion bash|zsh`: shell completion scripts, generated from the command tree so
 * they never fall behind the commands and flags.
 */
import type { Argument, Command, Option } from 'commander';
import { type Context, EXIT } from '../context.js';

/** A command and the path of names that leads to it (`windows check`). */
interface Node {
  path: string[];
  cmd: Command;
}

function walk(cmd: Command, path: string[] = []): Node[] {
  const out: Node[] = [{ path, cmd }];
  for (const sub of cmd.commands) out.push(...walk(sub, [...path, sub.name()]));
  return out;
}

const visible = (cmd: Command): Option[] =>
  cmd.options.filter((o) => !o.hidden && o.long !== '--help' && o.long !== '--version');

const takesValue = (o: Option): boolean => o.required || o.optional;
const isFile = (o: Option): boolean => /<file>/.test(o.flags);
const flagsOf = (o: Option): string[] => [o.short, o.long].filter((f): f is string => !!f);

/** The bash completion script for `program`. */
export function bashScript(program: Command): string {
  const nodes = walk(program);
  const globals = visible(program);
  const all = nodes.flatMap((n) => visible(n.cmd));
  const valueFlags = [...new Set(all.filter(takesValue).flatMap(flagsOf))];
  const fileFlags = [...new Set(all.filter(isFile).flatMap(flagsOf))];
  const choiceCases = all
    .filter((o) => o.argChoices)
    .map(
      (o) =>
        `    ${flagsOf(o).join('|')}) COMPREPLY=($(compgen -W "${o.argChoices!.join(' ')}" -- "$cur")); return ;;`,
    );
  const globalWords = globals.flatMap(flagsOf).join(' ');
  const paths = nodes.filter((n) => n.path.length > 0).map((n) => n.path.join(' '));
  const cases = nodes.map((n) => {
    const words = [
      ...n.cmd.commands.map((c) => c.name()),
      ...visible(n.cmd).flatMap(flagsOf),
      ...n.cmd.registeredArguments.flatMap((a: Argument) => a.argChoices ?? []),
    ];
    const extra = n.path.length > 0 ? ' $globals' : '';
    return `    "${n.path.join(' ')}") words="${words.join(' ')}${extra}" ;;`;
  });
  return `# bash completion for sluicectl.
# Load it now:    source <(sluicectl completion bash)
# Or for good:    sluicectl completion bash > /etc/bash_completion.d/sluicectl
_sluicectl() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]}
  local globals="${globalWords}"
  local value_flags=" ${valueFlags.join(' ')} "
  local commands="|${paths.join('|')}|"
  local path="" skip=0 i w
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    if ((skip)); then skip=0; continue; fi
    case $w in
      --*=*) ;;
      -*) [[ $value_flags == *" $w "* ]] && skip=1 ;;
      *) [[ $commands == *"|\${path:+$path }$w|"* ]] && path="\${path:+$path }$w" ;;
    esac
  done
  case $prev in
${choiceCases.join('\n')}
    ${fileFlags.join('|')}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  [[ $value_flags == *" $prev "* ]] && return
  local words=""
  case $path in
${cases.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _sluicectl sluicectl
`;
}

/** Quotes text for a single-quoted zsh word. */
const sq = (text: string): string => `'${text.replace(/'/g, `'\\''`)}'`;
/** Escapes an _arguments description. */
const desc = (text: string): string => text.replace(/[[\]\\]/g, '\\$&');

function zshOptionSpecs(o: Option): string[] {
  const flags = flagsOf(o);
  const exclusive = flags.length > 1 ? `(${flags.join(' ')})` : '';
  const value = /<([^>]+)>/.exec(o.flags)?.[1] ?? 'value';
  const action = o.argChoices ? `(${o.argChoices.join(' ')})` : isFile(o) ? '_files' : '';
  return flags.map((f) => {
    const eq = f.startsWith('--') && takesValue(o) ? '=' : '';
    const arg = takesValue(o) ? `:${value}:${action}` : '';
    return sq(`${exclusive}${f}${eq}[${desc(o.description)}]${arg}`);
  });
}

/** Expands the global option specs inside a zsh function. */
const ZSH_GLOBALS = '"$' + '{_sluicectl_globals[@]}"';

function zshFunctionName(path: string[]): string {
  return ['_sluicectl', ...path.map((p) => p.replace(/-/g, '_'))].join('__');
}

/** The zsh completion script for `program`. */
export function zshScript(program: Command): string {
  const globals = visible(program).flatMap(zshOptionSpecs);
  const functions = walk(program).map(({ path, cmd }) => {
    const own = path.length > 0 ? visible(cmd).flatMap(zshOptionSpecs) : [];
    const args = cmd.registeredArguments.map((a: Argument) => {
      const action = a.argChoices ? `(${a.argChoices.join(' ')})` : '';
      return sq(`${a.required ? ':' : '::'}${a.name()}:${action}`);
    });
    const specs = [ZSH_GLOBALS, ...own, ...args];
    if (cmd.commands.length === 0) {
      return `${zshFunctionName(path)}() {
  _arguments -s ${specs.join(' \\\n    ')}
}`;
    }
    const names = cmd.commands.map((c) => sq(`${c.name()}:${c.description()}`)).join(' ');
    const dispatch = cmd.commands
      .map((c) => `        ${c.name()}) ${zshFunctionName([...path, c.name()])} ;;`)
      .join('\n');
    return `${zshFunctionName(path)}() {
  local curcontext="$curcontext" state line
  _arguments -C ${specs.join(' \\\n    ')} \\
    ': :->command' '*:: :->args' && return
  case $state in
    command)
      local -a commands
      commands=(${names})
      _describe -t commands 'sluicectl command' commands ;;
    args)
      case $words[1] in
${dispatch}
      esac ;;
  esac
}`;
  });
  return `#compdef sluicectl
# zsh completion for sluicectl.
# Load it now:    source <(sluicectl completion zsh)
# Or for good:    sluicectl completion zsh > "\${fpath[1]}/_sluicectl"
_sluicectl_globals=(
  ${globals.join('\n  ')}
)

${functions.join('\n\n')}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _sluicectl "$@"
else
  compdef _sluicectl sluicectl
fi
`;
}

/** Prints the completion script for `shell`. */
export async function completion(
  ctx: Context,
  program: Command,
  shell: 'bash' | 'zsh',
): Promise<number> {
  ctx.out(shell === 'bash' ? bashScript(program) : zshScript(program));
  return EXIT.ok;
}
