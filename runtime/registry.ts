/**
 * The plugin registry: explicit registration (no folder scanning), lookup by kind and
 * name with an error that lists what exists.
 *
 * @module
 */
import type { Plugin } from "../plugins/types.ts";

/** The plugin of kind K. */
export type PluginOf<K extends Plugin["kind"]> = Extract<Plugin, { kind: K }>;

/** Plugins by kind and name. */
export class PluginRegistry {
  #plugins = new Map<string, Plugin>();

  /** Adds a plugin; a second plugin of the same kind and name is an error. */
  register(p: Plugin): this {
    const key = `${p.kind}:${p.name}`;
    if (this.#plugins.has(key)) {
      throw new Error(`A ${p.kind} plugin named "${p.name}" is already registered`);
    }
    this.#plugins.set(key, p);
    return this;
  }

  /** The plugin of `kind` named `name`. @throws {RangeError} naming the known ones. */
  get<K extends Plugin["kind"]>(kind: K, name: string): PluginOf<K> {
    const p = this.#plugins.get(`${kind}:${name}`);
    if (!p) {
      const known = this.list(kind).map((x) => x.name).join(", ") || "none";
      throw new RangeError(`Unknown ${kind} "${name}"; registered: ${known}`);
    }
    return p as PluginOf<K>;
  }

  /** True when a plugin of `kind` named `name` is registered. */
  has(kind: Plugin["kind"], name: string): boolean {
    return this.#plugins.has(`${kind}:${name}`);
  }

  /** All plugins, or those of one kind, in registration order. */
  list<K extends Plugin["kind"]>(kind?: K): PluginOf<K>[] {
    return [...this.#plugins.values()].filter((p) => !kind || p.kind === kind) as PluginOf<K>[];
  }
}
