import { randomUUID } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * The local EventBridge default bus: rules with event patterns (the same pattern objects CDK deploys),
 * targets invoked asynchronously with retries, and rate schedules that emit "Scheduled Event"s. A
 * failing target never reaches the producer of the event, as with PutEvents.
 */

export type EventPattern = Readonly<Record<string, unknown>>;

export interface BusEvent {
  version: string;
  id: string;
  'detail-type': string;
  source: string;
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: unknown;
}

/** An event as a producer puts it: the envelope fields it leaves out are filled in as EventBridge does. */
export type EventEntry = Pick<BusEvent, 'source' | 'detail-type'> & Partial<BusEvent>;

export type EventTarget = (event: BusEvent) => Promise<unknown>;

export interface EventBusOptions {
  region?: string;
  accountId?: string;
  /** waits before the 2nd, 3rd, ... attempt of a failing target */
  retryDelaysMs?: number[];
  logError?: (message: string, err: unknown) => void;
}

export interface EventBus {
  /** Adds or replaces a rule; an invalid pattern throws, as PutRule answers InvalidEventPatternException. */
  addRule(name: string, pattern: EventPattern, target: EventTarget): void;
  /** Resolves once the events are accepted; targets run afterwards. */
  putEvents(events: EventEntry[]): Promise<void>;
  matches(pattern: EventPattern, event: unknown): boolean;
  /** A `rate(...)` schedule: the target receives a Scheduled Event every `rateMs`. Returns its stop function. */
  every(name: string, rateMs: number, target: EventTarget): () => void;
  /** Settles when every delivery started so far has succeeded or used up its attempts. */
  drain(): Promise<void>;
  /** Stops all schedules. */
  close(): void;
}

type Json = unknown;
type LeafTest = (value: Json) => boolean;

interface Condition {
  path: string[];
  /** the field matches when any of these holds for any of its values */
  tests: LeafTest[];
  /** `exists` tests ask about the field as a whole, not about one value */
  exists?: boolean;
}

interface CompiledPattern {
  conditions: Condition[];
  /** each `$or` holds alternatives of which one must match */
  alternatives: CompiledPattern[][];
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const invalid = (message: string): never => {
  throw new Error(`Invalid event pattern: ${message}`);
};

const caseless = (value: string) => value.toLocaleLowerCase('en-US');

const stringTest =
  (check: (value: string) => boolean): LeafTest =>
  (value) =>
    typeof value === 'string' && check(value);

/** `a*b` with `\*` for a literal star */
const wildcardTest = (pattern: string): LeafTest => {
  const source = pattern
    .split(/(?<!\\)\*/)
    .map((part) => part.replaceAll('\\*', '*').replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  const regex = new RegExp(`^${source}$`, 's');
  return stringTest((value) => regex.test(value));
};

const cidrTest = (cidr: unknown): LeafTest => {
  if (typeof cidr !== 'string') return invalid('cidr takes a string');
  const [address = '', bits] = cidr.split('/');
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : invalid(`bad cidr ${cidr}`);
  const prefix = Number(bits ?? (family === 'ipv4' ? 32 : 128));
  const block = new BlockList();
  block.addSubnet(address, prefix, family);
  return stringTest((value) => {
    const valueFamily = isIPv4(value) ? 'ipv4' : isIPv6(value) ? 'ipv6' : undefined;
    return valueFamily !== undefined && block.check(value, valueFamily);
  });
};

/** `prefix` and `suffix` take a string or `{"equals-ignore-case": string}` */
const affixTest = (operand: unknown, has: (value: string, affix: string) => boolean): LeafTest => {
  if (typeof operand === 'string') return stringTest((value) => has(value, operand));
  if (isPlainObject(operand) && typeof operand['equals-ignore-case'] === 'string') {
    const affix = caseless(operand['equals-ignore-case']);
    return stringTest((value) => has(caseless(value), affix));
  }
  return invalid('prefix and suffix take a string or {"equals-ignore-case": string}');
};

const literalTest =
  (expected: unknown): LeafTest =>
  (value) =>
    value === expected;

const NUMERIC_OPERATORS: Record<string, (value: number, bound: number) => boolean> = {
  '=': (v, b) => v === b,
  '<': (v, b) => v < b,
  '<=': (v, b) => v <= b,
  '>': (v, b) => v > b,
  '>=': (v, b) => v >= b,
};

const numericTest = (operand: unknown): LeafTest => {
  if (!Array.isArray(operand) || operand.length === 0 || operand.length % 2 !== 0) {
    return invalid('numeric takes [operator, number, ...]');
  }
  const checks: Array<(value: number) => boolean> = [];
  for (let i = 0; i < operand.length; i += 2) {
    const compare = NUMERIC_OPERATORS[String(operand[i])];
    const bound = operand[i + 1];
    if (!compare || typeof bound !== 'number')
      return invalid(`bad numeric operand ${JSON.stringify(operand)}`);
    checks.push((value) => compare(value, bound));
  }
  return (value) => typeof value === 'number' && checks.every((check) => check(value));
};

const anythingButTest = (operand: unknown): LeafTest => {
  if (isPlainObject(operand)) {
    const [operator, inner] = Object.entries(operand)[0] ?? [];
    let excluded: LeafTest;
    if (operator === 'prefix') excluded = affixTest(inner, (value, affix) => value.startsWith(affix));
    else if (operator === 'suffix') excluded = affixTest(inner, (value, affix) => value.endsWith(affix));
    else if (operator === 'equals-ignore-case' || operator === 'wildcard') {
      const operands = Array.isArray(inner) ? inner : [inner];
      const tests = operands.map((one) => leafTest({ [operator]: one }));
      excluded = (value) => tests.some((test) => test(value));
    } else return invalid(`anything-but does not take ${operator}`);
    // anything-but with a string operator still asks for a string
    return stringTest((value) => !excluded(value));
  }
  const excluded = Array.isArray(operand) ? operand : [operand];
  if (excluded.some((one) => typeof one !== 'string' && typeof one !== 'number')) {
    return invalid('anything-but takes strings, numbers or an operator');
  }
  return (value) => !excluded.includes(value);
};

/** One element of a leaf's array in the pattern. */
const leafTest = (element: unknown): LeafTest => {
  if (!isPlainObject(element)) {
    if (Array.isArray(element)) return invalid('nested arrays are not allowed');
    return literalTest(element);
  }
  const entries = Object.entries(element);
  if (entries.length !== 1) return invalid(`an operator object has one key: ${JSON.stringify(element)}`);
  const [operator, operand] = entries[0] as [string, unknown];
  switch (operator) {
    case 'prefix':
      return affixTest(operand, (value, affix) => value.startsWith(affix));
    case 'suffix':
      return affixTest(operand, (value, affix) => value.endsWith(affix));
    case 'equals-ignore-case': {
      if (typeof operand !== 'string') return invalid('equals-ignore-case takes a string');
      const expected = caseless(operand);
      return stringTest((value) => caseless(value) === expected);
    }
    case 'anything-but':
      return anythingButTest(operand);
    case 'numeric':
      return numericTest(operand);
    case 'wildcard':
      if (typeof operand !== 'string') return invalid('wildcard takes a string');
      return wildcardTest(operand);
    case 'cidr':
      return cidrTest(operand);
    default:
      return invalid(`unknown operator ${operator}`);
  }
};

const compile = (pattern: unknown, path: string[] = []): CompiledPattern => {
  if (!isPlainObject(pattern)) return invalid('a pattern is a JSON object');
  const compiled: CompiledPattern = { conditions: [], alternatives: [] };
  for (const [key, value] of Object.entries(pattern)) {
    if (key === '$or') {
      if (!Array.isArray(value) || value.length < 2) return invalid('$or takes two or more patterns');
      compiled.alternatives.push(value.map((alternative) => compile(alternative, path)));
    } else if (isPlainObject(value)) {
      const nested = compile(value, [...path, key]);
      compiled.conditions.push(...nested.conditions);
      compiled.alternatives.push(...nested.alternatives);
    } else if (Array.isArray(value)) {
      const condition: Condition = { path: [...path, key], tests: [] };
      for (const element of value) {
        if (isPlainObject(element) && 'exists' in element) {
          if (typeof element.exists !== 'boolean' || value.length !== 1) {
            return invalid('exists takes true or false and stands alone');
          }
          condition.exists = element.exists;
        } else condition.tests.push(leafTest(element));
      }
      compiled.conditions.push(condition);
    } else {
      return invalid(`the value of "${[...path, key].join('.')}" must be an array or an object`);
    }
  }
  return compiled;
};

/** The leaf values at a path; arrays anywhere along it are flattened, as EventBridge does. */
const valuesAt = (node: Json, path: string[]): Json[] => {
  if (Array.isArray(node)) return node.flatMap((element) => valuesAt(element, path));
  if (path.length === 0) return isPlainObject(node) ? [] : [node];
  if (!isPlainObject(node)) return [];
  const [head, ...rest] = path as [string, ...string[]];
  return head in node ? valuesAt(node[head], rest) : [];
};

const satisfies = (compiled: CompiledPattern, event: Json): boolean =>
  compiled.conditions.every((condition) => {
    const values = valuesAt(event, condition.path);
    if (condition.exists !== undefined) return condition.exists === values.length > 0;
    return values.some((value) => condition.tests.some((test) => test(value)));
  }) && compiled.alternatives.every((alternatives) => alternatives.some((one) => satisfies(one, event)));

/** Whether an event matches an EventBridge event pattern. Throws on an invalid pattern. */
export const matchesPattern = (pattern: EventPattern, event: unknown): boolean =>
  satisfies(compile(pattern), event);

/**
 * A pattern compiled once, for matching many events (as Lambda's event filtering applies the same
 * patterns to every record). Throws on an invalid pattern at once.
 */
export const patternMatcher = (pattern: EventPattern): ((event: unknown) => boolean) => {
  const compiled = compile(pattern);
  return (event) => satisfies(compiled, event);
};

/** EventBridge writes `time` to the second. */
const eventTime = (date = new Date()) => `${date.toISOString().slice(0, 19)}Z`;

export const createEventBus = (options: EventBusOptions = {}): EventBus => {
  const {
    region = 'us-east-1',
    accountId = '000000000000',
    retryDelaysMs = [1000, 4000],
    logError = (message, err) => console.error(message, err),
  } = options;
  const rules = new Map<string, { compiled: CompiledPattern; target: EventTarget }>();
  const schedules = new Set<NodeJS.Timeout>();
  const inFlight = new Set<Promise<void>>();

  const deliver = (ruleName: string, target: EventTarget, event: BusEvent) => {
    const delivery = (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          await target(structuredClone(event));
          return;
        } catch (err) {
          const delay = retryDelaysMs[attempt - 1];
          const attempts = retryDelaysMs.length + 1;
          if (delay === undefined) {
            logError(`rule ${ruleName}: target failed on event ${event.id} after ${attempts} attempts`, err);
            return;
          }
          logError(
            `rule ${ruleName}: target failed on event ${event.id} (attempt ${attempt} of ${attempts})`,
            err,
          );
          await sleep(delay);
        }
      }
    })();
    inFlight.add(delivery);
    void delivery.finally(() => inFlight.delete(delivery));
  };

  return {
    addRule: (name, pattern, target) => {
      rules.set(name, { compiled: compile(pattern), target });
    },

    putEvents: async (entries) => {
      for (const entry of entries) {
        const event: BusEvent = {
          version: '0',
          id: randomUUID(),
          account: accountId,
          time: eventTime(),
          region,
          resources: [],
          detail: {},
          ...entry,
        };
        for (const [name, rule] of rules) {
          if (satisfies(rule.compiled, event)) deliver(name, rule.target, event);
        }
      }
    },

    matches: matchesPattern,

    every: (name, rateMs, target) => {
      const timer = setInterval(() => {
        deliver(name, target, {
          version: '0',
          id: randomUUID(),
          'detail-type': 'Scheduled Event',
          source: 'aws.events',
          account: accountId,
          time: eventTime(),
          region,
          resources: [`arn:aws:events:${region}:${accountId}:rule/${name}`],
          detail: {},
        });
      }, rateMs);
      schedules.add(timer);
      return () => {
        clearInterval(timer);
        schedules.delete(timer);
      };
    },

    drain: async () => {
      while (inFlight.size > 0) await Promise.all(inFlight);
    },

    close: () => {
      for (const timer of schedules) clearInterval(timer);
      schedules.clear();
    },
  };
};
