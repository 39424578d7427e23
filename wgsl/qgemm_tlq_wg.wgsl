// TLQ tables in workgroup memory (qgemm_dec.wgsl MODE 5 and 6, with qgemm_tlq.wgsl): the
// kernel calls tlq_build once for the rows its workgroup touches (from uniform control
// flow; it ends with a barrier), then decodes from the table. Both modes first fill the
// f32 LUT, 2^b words a row, one level a lane; MODE 6 then adds per row s_row and the int8
// LUT (1 + 2^b/4 words) after it, one row a lane (a max and 2^b integer roundings, no exp2).
// The host keeps rows × (2^b + TLQ_PAD + 1 + 2^b/4) ≤ TLQ_WORDS (a const: naga rejected an
// override-sized array here).
const TLQ_WORDS: u32 = 2688u; // 128 rows at W4 (MODE 6)

// Words after each f32 LUT row: a stride of 2^b + TLQ_PAD spreads the lookups of
// neighbouring rows over more memory banks.
override TLQ_PAD: u32 = 0u;

var<workgroup> tlq_t: array<u32, TLQ_WORDS>;
var<private> tlq_r0: u32;
var<private> tlq_b8: u32; // MODE 6: where the int8 rows start

fn tlq_stride8() -> u32 { return 1u + (1u << BITS) / 4u; }

// Where row r (from r0) of the f32 LUT starts.
fn tlq_row(r: u32) -> u32 { return r * ((1u << BITS) + TLQ_PAD); }

// Fills the table of rows r0 … r0 + rows − 1 (clamped to N − 1), lanes `lanes` apart.
fn tlq_build(r0: u32, rows: u32, lane: u32, lanes: u32) {
  tlq_r0 = r0;
  let L = 1u << BITS;
  let eta = tlq_eta();
  for (var i = lane; i < rows * L; i += lanes) {
    tlq_t[tlq_row(i / L) + i % L] = bitcast<u32>(tlq_level(min(r0 + i / L, p.N - 1u), i % L, eta));
  }
  if (MODE == 6u) {
    workgroupBarrier();
    tlq_b8 = tlq_row(rows);
    let st = tlq_stride8();
    for (var i = lane; i < rows; i += lanes) {
      var m = 0.0;
      for (var c = 0u; c < L; c++) { m = max(m, abs(bitcast<f32>(tlq_t[tlq_row(i) + c]))); }
      var w = vec4<u32>(0u);
      for (var c = 0u; c < L; c++) {
        let q = tlq_q8(bitcast<f32>(tlq_t[tlq_row(i) + c]), m);
        w[c / 4u] |= (u32(q) & 0xffu) << ((c % 4u) * 8u);
      }
      let o = tlq_b8 + i * st;
      tlq_t[o] = bitcast<u32>(m / 127.0);
      for (var j = 0u; j < L / 4u; j++) { tlq_t[o + 1u + j] = w[j]; }
    }
  }
  workgroupBarrier();
}

// MODE 5: the four levels of codes c in row `row`.
fn tlq_w4(row: u32, c: vec4<u32>) -> vec4<f32> {
  let b = tlq_row(row - tlq_r0);
  return vec4<f32>(bitcast<f32>(tlq_t[b + c.x]), bitcast<f32>(tlq_t[b + c.y]),
                   bitcast<f32>(tlq_t[b + c.z]), bitcast<f32>(tlq_t[b + c.w]));
}

fn tlq_byte(b: u32, c: u32) -> u32 { return (tlq_t[b + c / 4u] >> ((c % 4u) * 8u)) & 0xffu; }

// MODE 6: the int8 of codes c in row `row`, four a word.
fn tlq_i8(row: u32, c: vec4<u32>) -> u32 {
  let b = tlq_b8 + (row - tlq_r0) * tlq_stride8() + 1u;
  return tlq_byte(b, c.x) | (tlq_byte(b, c.y) << 8u) | (tlq_byte(b, c.z) << 16u) |
    (tlq_byte(b, c.w) << 24u);
}

// MODE 6: s_row.
fn tlq_s(row: u32) -> f32 { return bitcast<f32>(tlq_t[tlq_b8 + (row - tlq_r0) * tlq_stride8()]); }
