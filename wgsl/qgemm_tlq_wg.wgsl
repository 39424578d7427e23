// TLQ tables in workgroup memory (qgemm_dec.wgsl MODE 5 and 6, with qgemm_tlq.wgsl): the
// kernel calls tlq_build once for the rows its workgroup touches (from uniform control
// flow; it ends with a barrier), then decodes from the table. MODE 5: the f32 LUT, 2^b
// words a row; MODE 6: s_row then the int8 LUT (1 + 2^b/4 words a row). The host keeps
// rows × words a row ≤ TLQ_WORDS (a const: naga rejected an override-sized array here).
const TLQ_WORDS: u32 = 2048u;

var<workgroup> tlq_t: array<u32, TLQ_WORDS>;
var<private> tlq_r0: u32;

fn tlq_stride() -> u32 { return select(1u << BITS, 1u + (1u << BITS) / 4u, MODE == 6u); }

// Fills the table of rows r0 … r0 + rows − 1 (clamped to N − 1), lanes `lanes` apart.
fn tlq_build(r0: u32, rows: u32, lane: u32, lanes: u32) {
  tlq_r0 = r0;
  let L = 1u << BITS;
  if (MODE == 5u) {
    let eta = tlq_eta();
    for (var i = lane; i < rows * L; i += lanes) {
      tlq_t[i] = bitcast<u32>(tlq_level(min(r0 + i / L, p.N - 1u), i % L, eta));
    }
  } else {
    let st = tlq_stride();
    for (var i = lane; i < rows; i += lanes) {
      let r = tlq_row8(min(r0 + i, p.N - 1u));
      tlq_t[i * st] = bitcast<u32>(r.s);
      for (var j = 0u; j < L / 4u; j++) { tlq_t[i * st + 1u + j] = r.w[j]; }
    }
  }
  workgroupBarrier();
}

// MODE 5: the four levels of codes c in row `row`.
fn tlq_w4(row: u32, c: vec4<u32>) -> vec4<f32> {
  let b = (row - tlq_r0) << BITS;
  return vec4<f32>(bitcast<f32>(tlq_t[b + c.x]), bitcast<f32>(tlq_t[b + c.y]),
                   bitcast<f32>(tlq_t[b + c.z]), bitcast<f32>(tlq_t[b + c.w]));
}

fn tlq_byte(b: u32, c: u32) -> u32 { return (tlq_t[b + c / 4u] >> ((c % 4u) * 8u)) & 0xffu; }

// MODE 6: the int8 of codes c in row `row`, four a word.
fn tlq_i8(row: u32, c: vec4<u32>) -> u32 {
  let b = (row - tlq_r0) * tlq_stride() + 1u;
  return tlq_byte(b, c.x) | (tlq_byte(b, c.y) << 8u) | (tlq_byte(b, c.z) << 16u) |
    (tlq_byte(b, c.w) << 24u);
}

// MODE 6: s_row.
fn tlq_s(row: u32) -> f32 { return bitcast<f32>(tlq_t[(row - tlq_r0) * tlq_stride()]); }
