// Entry int8_luts of qgemm_decode.wgsl (composed in after it, with the TLQ workgroup table
// fragment, MODE 6 only): a compact TLQ weight's int8 tables in MODE 2's layout — s_row [N]
// (f32 bits), then per row its 2^b int8 levels four a word — so that a MODE 2 GEMM runs on
// the weight with tables built once per call instead of once per workgroup.
@compute @workgroup_size(WG)
fn int8_luts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
             @builtin(local_invocation_index) lane: u32) {
  let r0 = first_of(wg, ng);
  tlq_build(r0, WG, lane, WG);
  let r = r0 + lane;
  if (r >= p.N) { return; }
  let words = (1u << BITS) / 4u;
  let o = tlq_b8 + lane * tlq_stride8(); // s_row, then the int8 LUT words
  outi[r] = tlq_t[o];
  for (var j = 0u; j < words; j++) { outi[p.N + r * words + j] = tlq_t[o + 1u + j]; }
}
