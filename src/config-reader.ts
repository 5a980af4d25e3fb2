import { readFileSync } from 'node:fs';

/** A bad config value: names the file, the key and the fix, and stops start-up. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Raw = Record<string, unknown>;

/**
 * Typed access to one INI section. Each getter validates its key and throws a ConfigError
 * that says where and how to fix it; `unused()` lists the keys nobody asked for.
 */
export class SectionReader {
  private readonly seen = new Set<string>();

  constructor(
    readonly file: string,
    readonly section: string,
    private readonly raw: Raw,
  ) {}

  keys(): string[] {
    return Object.keys(this.raw);
  }

  fail(key: string, problem: string, fix: string): never {
    const where = this.section ? `[${this.section}] ${key}` : key;
    throw new ConfigError(`${this.file}: ${where}: ${problem}; fix: ${fix}`);
  }

  string(key: string, fallback: string): string {
    this.seen.add(key);
    const value = this.raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value === 'boolean') return String(value);
    if (typeof value !== 'string') this.fail(key, 'is given more than once or as a list', `write "${key} = value" once`);
    return value.trim() === '' ? fallback : value.trim();
  }

  boolean(key: string, fallback: boolean): boolean {
    const text = this.string(key, String(fallback)).toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(text)) return true;
    if (['false', 'no', 'off', '0'].includes(text)) return false;
    return this.fail(key, `${JSON.stringify(text)} is not a boolean`, `set ${key} to true or false`);
  }

  integer(key: string, fallback: number, min: number, max: number): number {
    const text = this.string(key, String(fallback));
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    if (!(value >= min && value <= max)) {
      this.fail(key, `${JSON.stringify(text)} is not a whole number from ${min} to ${max}`, `set ${key} to such a number (default ${fallback})`);
    }
    return value;
  }

  seconds(key: string, fallback: number): number {
    const text = this.string(key, String(fallback));
    const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
    if (!(value > 0 && value <= 86_400)) {
      this.fail(key, `${JSON.stringify(text)} is not a number of seconds`, `set ${key} to a positive number of seconds (default ${fallback})`);
    }
    return value;
  }

  /** The content of the file the key names (a password, certificate, key, CA), read now; undefined when the key is not set. */
  readNamedFile(key: string): { path: string; content: Buffer } | undefined {
    const path = this.string(key, '');
    if (!path) return undefined;
    try {
      return { path, content: readFileSync(path) };
    } catch (error) {
      const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      return this.fail(key, `cannot read ${path} (${why})`, 'correct the path, or make the file readable by this user');
    }
  }

  /**
   * One value of `key` as a URL whose scheme is one of `protocols` (`'mqtt:'`), else a
   * ConfigError with `fix`; `quoted` false keeps a value that may hold a password out of it.
   */
  url(key: string, text: string, protocols: readonly string[], fix: string, quoted = true): URL {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      return this.fail(key, `${quoted ? `${JSON.stringify(text)} ` : ''}is not a URL`, fix);
    }
    if (!protocols.includes(url.protocol)) this.fail(key, `scheme ${url.protocol} is not supported`, fix);
    return url;
  }

  list(key: string): string[] {
    return this.string(key, '').split(/[\s,]+/).filter(Boolean);
  }

  /** Every key of the section as a string, for map sections such as [jails]. */
  entries(): Array<[string, string]> {
    return this.keys().map((key) => [key, this.string(key, '')]);
  }

  unused(): string[] {
    return this.keys().filter((key) => !this.seen.has(key));
  }

  /** The keys asked for so far: after parsing, every key this section knows. */
  known(): ReadonlySet<string> {
    return this.seen;
  }
}
