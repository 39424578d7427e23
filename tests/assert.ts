/**
 * Small assertion helpers for the tests (Deno std's asserts live on JSR, which is not
 * reachable here). Built on node:assert for deep equality.
 *
 * @module
 */
import { deepStrictEqual } from "node:assert";

/** Thrown by a failed assertion. */
export class AssertionError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** Asserts that `cond` is truthy. */
export function assert(cond: unknown, msg = "Assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(msg);
}

/** Asserts deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    deepStrictEqual(actual, expected);
  } catch (e) {
    throw new AssertionError(`${msg ? msg + ": " : ""}${(e as Error).message}`);
  }
}

/** Asserts |actual − expected| ≤ tol. */
export function assertAlmostEquals(
  actual: number,
  expected: number,
  tol = 1e-7,
  msg?: string,
): void {
  if (!(Math.abs(actual - expected) <= tol)) {
    throw new AssertionError(
      `${msg ? msg + ": " : ""}expected ${expected} ± ${tol}, got ${actual}`,
    );
  }
}

// deno-lint-ignore no-explicit-any
type ErrorClass = abstract new (...args: any[]) => Error;

function checkError(e: unknown, cls?: ErrorClass, includes?: string): Error {
  if (!(e instanceof Error)) throw new AssertionError(`Expected an Error, got ${String(e)}`);
  const err: Error = e;
  if (cls && !(err instanceof cls)) {
    const got = e as Error;
    throw new AssertionError(`Expected ${cls.name}, got ${got.name}: ${got.message}`);
  }
  if (includes && !err.message.includes(includes)) {
    throw new AssertionError(`Expected the message to include "${includes}", got "${err.message}"`);
  }
  return err;
}

/** Asserts that `fn` throws (an instance of `cls` whose message includes `includes`). */
export function assertThrows(fn: () => unknown, cls?: ErrorClass, includes?: string): Error {
  try {
    fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new AssertionError("Expected the function to throw");
}

/** Asserts that `fn` rejects (an instance of `cls` whose message includes `includes`). */
export async function assertRejects(
  fn: () => Promise<unknown>,
  cls?: ErrorClass,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, cls, includes);
  }
  throw new AssertionError("Expected the promise to reject");
}

/**
 * The largest |a − b| over two arrays, and where it is; the first NaN difference, if any, is
 * the answer (max NaN fails every bound).
 */
export function maxAbsDiff(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): { max: number; at: number } {
  if (a.length !== b.length) throw new AssertionError(`Length ${a.length} != ${b.length}`);
  let max = 0;
  let at = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    // A NaN kept as the running max would be replaced by the next finite difference.
    if (Number.isNaN(d)) return { max: NaN, at: i };
    if (d > max) {
      max = d;
      at = i;
    }
  }
  return { max, at };
}

/** ‖a − b‖ / ‖b‖. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    e += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(e / n);
}

/** Root mean square of an array. */
export function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s / Math.max(1, a.length));
}

/**
 * Asserts elementwise closeness: |a − e| ≤ atol + rtol·|e| everywhere (NaN fails).
 * The message names the first failing index and the largest difference.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-5, msg = "" }: { atol?: number; rtol?: number; msg?: string } = {},
): void {
  if (actual.length !== expected.length) {
    throw new AssertionError(`${msg} length ${actual.length} != expected ${expected.length}`);
  }
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= atol + rtol * Math.abs(expected[i]))) {
      const { max, at } = maxAbsDiff(actual, expected);
      throw new AssertionError(
        `${msg} mismatch at ${i}: got ${actual[i]}, expected ${expected[i]} ` +
          `(atol ${atol}, rtol ${rtol}); max |diff| ${max} at ${at}`,
      );
    }
  }
}
