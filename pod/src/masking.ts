/** What a secret's value becomes wherever the pod reports or logs it. */
export const MASK = '***';

/** Values shorter than this are not masked: masking `1` or `ab` would garble everything and hide nothing. */
const MIN_MASKED_LENGTH = 4;

/**
 * Hides secret values (the pod's secrets, the run's git credential) in everything the pod sends: its
 * events and its log. An agent may print a secret it was given; what leaves the sandbox never shows
 * it. A value spanning lines is masked line by line too, since logs and tools split output at lines.
 */
export class Masker {
  private values: string[] = [];

  add(...secrets: string[]): void {
    const pieces = secrets.flatMap((secret) => [secret, ...secret.split(/\r?\n/)]);
    const next = new Set([...this.values, ...pieces.filter((p) => p.length >= MIN_MASKED_LENGTH)]);
    // longest first, so a secret that contains another is masked whole
    this.values = [...next].sort((a, b) => b.length - a.length);
  }

  text(value: string): string {
    let masked = value;
    for (const secret of this.values) {
      if (masked.includes(secret)) masked = masked.replaceAll(secret, MASK);
    }
    return masked;
  }

  /** Every string in a value: an event's content, its tool arguments. */
  deep<T>(value: T): T {
    if (this.values.length === 0) return value;
    return this.walk(value) as T;
  }

  private walk(value: unknown): unknown {
    if (typeof value === 'string') return this.text(value);
    if (Array.isArray(value)) return value.map((item) => this.walk(item));
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, this.walk(item)]));
    }
    return value;
  }
}
