/**
 * Bit packing of quantized weights and activations.
 *
 * Weight codes: b-bit unsigned codes packed little-endian into u32 words, row by row,
 * ⌊32 / b⌋ codes a word (b = 3: ten codes in the low 30 bits; 4: eight; 8: four), each
 * row starting a new word, so a row of K codes takes ⌈K / ⌊32/b⌋⌉ words and code k of a
 * row sits in word ⌊k / cpw⌋ at bit (k mod cpw)·b. Unused tail bits are zero.
 *
 * Int8 values (activations, decoded weights): four per u32 word, little-endian, two's
 * complement, rows zero-padded to a whole word (WGSL's pack4xI8 layout).
 *
 * @module
 */

/** Codes per u32 word at `bits` bits (3 → 10, 4 → 8, 8 → 4). */
export function codesPerWord(bits: number): number {
  if (!Number.isInteger(bits) || bits < 1 || bits > 16) {
    throw new RangeError(`bits must be an integer in [1, 16], got ${bits}`);
  }
  return Math.floor(32 / bits);
}

/** Words per row of `cols` codes at `bits` bits. */
export function wordsPerRow(cols: number, bits: number): number {
  return Math.ceil(cols / codesPerWord(bits));
}

/** Packs `rows × cols` codes (each < 2^bits) into u32 words, row by row. */
export function packCodes(
  codes: ArrayLike<number>,
  rows: number,
  cols: number,
  bits: number,
): Uint32Array {
  if (codes.length !== rows * cols) {
    throw new RangeError(`codes has ${codes.length} values, not ${rows}×${cols}`);
  }
  const cpw = codesPerWord(bits);
  const wpr = Math.ceil(cols / cpw);
  const max = 2 ** bits;
  const out = new Uint32Array(rows * wpr);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = codes[r * cols + c];
      if (!(v >= 0 && v < max) || !Number.isInteger(v)) {
        throw new RangeError(`code ${v} at [${r}, ${c}] is not an integer in [0, ${max})`);
      }
      const w = r * wpr + Math.floor(c / cpw);
      out[w] = (out[w] | (v << ((c % cpw) * bits))) >>> 0;
    }
  }
  return out;
}

/** Unpacks codes packed by {@linkcode packCodes}. */
export function unpackCodes(
  words: Uint32Array,
  rows: number,
  cols: number,
  bits: number,
): Uint8Array | Uint16Array {
  const cpw = codesPerWord(bits);
  const wpr = Math.ceil(cols / cpw);
  if (words.length !== rows * wpr) {
    throw new RangeError(`${words.length} words do not hold ${rows}×${cols} ${bits}-bit codes`);
  }
  const out = bits <= 8 ? new Uint8Array(rows * cols) : new Uint16Array(rows * cols);
  const mask = 2 ** bits - 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = (words[r * wpr + Math.floor(c / cpw)] >>> ((c % cpw) * bits)) & mask;
    }
  }
  return out;
}

/** Packs int8 values [rows, cols] four to a u32 word, rows padded to ⌈cols/4⌉ words. */
export function packInt8(values: ArrayLike<number>, rows: number, cols: number): Uint32Array {
  const wpr = Math.ceil(cols / 4);
  const out = new Uint32Array(rows * wpr);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c];
      if (!(v >= -128 && v <= 127) || !Number.isInteger(v)) {
        throw new RangeError(`value ${v} at [${r}, ${c}] is not an int8`);
      }
      const w = r * wpr + (c >> 2);
      out[w] = (out[w] | ((v & 0xff) << ((c & 3) * 8))) >>> 0;
    }
  }
  return out;
}

/** Unpacks int8 values packed by {@linkcode packInt8} (or by the GPU's pack4xI8). */
export function unpackInt8(words: Uint32Array, rows: number, cols: number): Int8Array {
  const wpr = Math.ceil(cols / 4);
  if (words.length < rows * wpr) {
    throw new RangeError(`${words.length} words do not hold ${rows}×${cols} int8 values`);
  }
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      out[r * cols + c] = (words[r * wpr + (c >> 2)] >>> ((c & 3) * 8)) & 0xff;
    }
  }
  return out;
}
