/**
 * Typed fields of diffusers' JSON configs (config.json, scheduler_config.json): each reader
 * takes the field or its default and throws a CheckpointError naming the file and the field.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";

/** The config as an object. @throws {CheckpointError} when it is not a JSON object. */
export function objectOf(raw: unknown, file: string): Record<string, unknown> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CheckpointError(file, "config must be a JSON object");
  }
  return raw as Record<string, unknown>;
}

/** An integer field ≥ `min` (absent or null: `def`). */
export function intField(
  cfg: Record<string, unknown>,
  key: string,
  def: number | undefined,
  file: string,
  min = 1,
): number {
  const v = cfg[key] ?? def;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) {
    throw new CheckpointError(
      file,
      `must be an integer ≥ ${min}, got ${JSON.stringify(cfg[key])}`,
      key,
    );
  }
  return v;
}

/** A boolean field (absent or null: `def`). */
export function boolField(
  cfg: Record<string, unknown>,
  key: string,
  def: boolean,
  file: string,
): boolean {
  const v = cfg[key] ?? def;
  if (typeof v !== "boolean") {
    throw new CheckpointError(file, `must be a boolean, got ${JSON.stringify(cfg[key])}`, key);
  }
  return v;
}

/** A finite number field (absent or null: `def`). */
export function numField(
  cfg: Record<string, unknown>,
  key: string,
  def: number,
  file: string,
): number {
  const v = cfg[key] ?? def;
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new CheckpointError(
      file,
      `must be a finite number, got ${JSON.stringify(cfg[key])}`,
      key,
    );
  }
  return v;
}

/** A string field that must be one of `allowed` (absent or null: `def`). */
export function enumField<const T extends string>(
  cfg: Record<string, unknown>,
  key: string,
  allowed: readonly T[],
  def: T,
  file: string,
): T {
  const v = cfg[key] ?? def;
  if (!allowed.includes(v as T)) {
    throw new CheckpointError(
      file,
      `must be ${allowed.map((a) => JSON.stringify(a)).join(", ")}; got ${JSON.stringify(v)}`,
      key,
    );
  }
  return v as T;
}
