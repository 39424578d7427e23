/**
 * JSON.parse for checkpoint files and their metadata: a syntax error becomes a
 * CheckpointError naming the file (and the field, when the text is one).
 *
 * Python's json module writes non-finite floats as the bare words `NaN`, `Infinity` and
 * `-Infinity` (diffusers' DPMSolverMultistepScheduler saves `"lambda_min_clipped":
 * -Infinity`), which JSON.parse refuses: {@linkcode parseJson} reads them as the numbers.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";

/**
 * Parses `text` as JSON, also accepting Python's `NaN`, `Infinity` and `-Infinity`.
 *
 * @throws {CheckpointError} "`file`: `field`: invalid JSON: …" on a syntax error.
 */
export function parseJson(text: string, file: string, field?: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const python = withPythonFloats(text);
    if (python !== undefined) {
      try {
        return JSON.parse(python.text, (_k, v) => python.values.get(v) ?? v);
      } catch { /* report the original error */ }
    }
    throw new CheckpointError(file, `invalid JSON: ${(e as Error).message}`, field);
  }
}

const PYTHON_FLOATS: ReadonlyArray<[string, number]> = [
  ["-Infinity", -Infinity],
  ["Infinity", Infinity],
  ["NaN", NaN],
];

/**
 * `text` with Python's non-finite words outside strings replaced by unique string tokens,
 * and what each token stands for; undefined when it has none.
 */
function withPythonFloats(
  text: string,
): { text: string; values: Map<string, number> } | undefined {
  const values = new Map<string, number>();
  const containers: string[] = []; // "{" or "[", innermost last
  let prev = ""; // the last character outside strings that is not white space
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      out += ch;
      if (ch === "\\") out += text[++i] ?? "";
      else if (ch === '"') inString = false;
      continue;
    }
    const atValue = prev === "" || prev === ":" || prev === "[" ||
      (prev === "," && containers.at(-1) === "[");
    const word = atValue &&
      PYTHON_FLOATS.find(([w]) => text.startsWith(w, i) && !/[\w$]/.test(text[i + w.length] ?? ""));
    if (word) {
      // A NUL-led string no config holds; the reviver turns it back into the number.
      const token = `\u0000py:${word[0]}:${text.length}`;
      values.set(token, word[1]);
      out += JSON.stringify(token);
      i += word[0].length - 1;
      prev = "0";
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") containers.push(ch);
    else if (ch === "}" || ch === "]") containers.pop();
    if (!/\s/.test(ch)) prev = ch;
    out += ch;
  }
  return values.size ? { text: out, values } : undefined;
}

/**
 * Reads and parses a JSON file (as {@linkcode parseJson}).
 *
 * @throws {CheckpointError} naming the file: missing ("no such file"), unreadable, or invalid.
 */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new CheckpointError(path, "no such file", "path");
    throw new CheckpointError(path, (e as Error).message, "path");
  }
  return parseJson(text, path);
}
