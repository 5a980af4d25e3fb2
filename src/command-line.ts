import { parseArgs } from 'node:util';
import { closestName } from './closest-name.js';
import { EXIT_USAGE } from './program.js';
import { programVersion } from './version.js';

/** One option of a program; `value` names its argument when it takes one. */
export interface OptionSpec {
  long: string;
  short?: string;
  value?: string;
  description: string;
}

/** What a program accepts: its --help is rendered from this, and its man page is checked against that. */
export interface CommandSpec {
  name: string;
  summary: string;
  /** Usage lines after the program's name. */
  usage: string[];
  options: OptionSpec[];
  /** Most positional arguments accepted. */
  maxPositionals: number;
  epilogue?: string;
}

export interface CommandLine {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

const STANDARD: OptionSpec[] = [
  { long: 'version', short: 'V', description: 'print the version and exit' },
  { long: 'help', short: 'h', description: 'print this help and exit' },
];

/**
 * Parses argv (without node and the script) against the spec. --help and --version print
 * and exit 0; an unknown option or a malformed command line exits 2 (bad arguments) with
 * one line saying why.
 */
export function parseCommandLine(spec: CommandSpec, argv: string[]): CommandLine {
  const options = Object.fromEntries(
    [...spec.options, ...STANDARD].map((option) => [
      option.long,
      { type: option.value ? ('string' as const) : ('boolean' as const), ...(option.short ? { short: option.short } : {}) },
    ]),
  );
  let parsed: CommandLine;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as CommandLine;
  } catch (error) {
    const message = (error as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    const unknown = /^Unknown option '--([^'=]+)'/.exec(message)?.[1];
    const suggestion = unknown === undefined ? undefined : closestName(unknown, [...spec.options, ...STANDARD].map((option) => option.long));
    return usageError(spec.name, suggestion === undefined ? message : `${message}: did you mean --${suggestion}?`);
  }
  if (parsed.values.help) {
    process.stdout.write(helpText(spec));
    process.exit(0);
  }
  if (parsed.values.version) {
    process.stdout.write(`${spec.name} ${programVersion()}\n`);
    process.exit(0);
  }
  if (parsed.positionals.length > spec.maxPositionals) usageError(spec.name, `unexpected argument ${JSON.stringify(parsed.positionals[spec.maxPositionals])}`);
  return parsed;
}

/** `unexpected thing "x"`, with the closest of `known` when one is close: "did you mean status?". */
export function unknownWord(what: string, word: string, known: readonly string[]): string {
  const suggestion = closestName(word, known);
  return `${what} ${JSON.stringify(word)}${suggestion === undefined ? '' : `: did you mean ${suggestion}?`}`;
}

/** Exits 2 with one line on stderr: what was wrong with the command line, and where help is. */
export function usageError(program: string, message: string): never {
  process.stderr.write(`${program}: ${message} (see "${program} --help")\n`);
  process.exit(EXIT_USAGE);
}

function helpText(spec: CommandSpec): string {
  const all = [...spec.options, ...STANDARD];
  const labels = all.map((option) => `${option.short ? `-${option.short}, ` : '    '}--${option.long}${option.value ? ` <${option.value}>` : ''}`);
  const width = Math.max(...labels.map((label) => label.length)) + 2;
  const usage = spec.usage.map((line, i) => `${i === 0 ? 'Usage:' : '      '} ${spec.name} ${line}`);
  const rows = all.map((option, i) => `  ${labels[i]!.padEnd(width)}${option.description}`);
  return [...usage, '', spec.summary, '', 'Options:', ...rows, ...(spec.epilogue ? ['', spec.epilogue] : []), ''].join('\n');
}
