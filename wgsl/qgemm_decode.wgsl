// Decodes a quantized weight into a dense one, for CPU adapters: there a load costs ~30
// cycles a lane whatever it reads, so decoding inside the GEMM's inner loop (LUT lookups
// per weight) would multiply its loads; decoding once per forward into a pooled buffer
// and running the dense kernel costs N·K/4 loads against the GEMM's M·N·K/16.
//   to_float:   W [N, K] (K % 4 == 0) in the storage type, MODE 0, 1, 5 or 8 (qgemm_dec.wgsl);
//   to_int8:    W as int8 words [N, K4], MODE 2, 4, 6 or 7;
//   row_scales: s_row [N] (f32 bits) of MODE 6;
//   int8_luts:  MODE 6's tables in MODE 2's layout (qgemm_decode_luts.wgsl, composed in
//               for that entry only: it needs the TLQ workgroup table).
// MODE 5/6: each workgroup first builds the TLQ tables of the rows its lanes touch
// (qgemm_tlq_wg.wgsl; WG consecutive vec4 span at most WG rows).
override WG: u32 = 64u;

struct Params { M: u32, N: u32, K: u32, K4: u32, rpg: u32, K8: u32, p0: u32, p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> outf: array<DT4>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(3) var<storage, read_write> outi: array<u32>;
@group(0) @binding(4) var<storage, read> wq: array<u32>;

// The first index of workgroup `wg` (lanes take consecutive indices).
fn first_of(wg: vec3<u32>, ng: vec3<u32>) -> u32 { return (wg.x + wg.y * ng.x) * WG; }

// TLQ compact: the tables of the rows that indices i0 … i0 + WG − 1 of [N, K4] fall in.
fn build_rows(i0: u32, lane: u32) {
  if (MODE == 5u || MODE == 6u) {
    let r0 = i0 / p.K4;
    tlq_build(r0, (i0 + WG - 1u) / p.K4 - r0 + 1u, lane, WG);
  }
}

@compute @workgroup_size(WG)
fn to_float(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
            @builtin(local_invocation_index) lane: u32) {
  let i0 = first_of(wg, ng);
  build_rows(i0, lane);
  let i = i0 + lane;
  if (i >= p.N * p.K4) { return; }
  outf[i] = DT4(wdec4(i / p.K4, i % p.K4));
}

@compute @workgroup_size(WG)
fn to_int8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
           @builtin(local_invocation_index) lane: u32) {
  let i0 = first_of(wg, ng);
  build_rows(i0, lane);
  let i = i0 + lane;
  if (i >= p.N * p.K4) { return; }
  outi[i] = wdec_i8(i / p.K4, i % p.K4);
}

@compute @workgroup_size(WG)
fn row_scales(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
              @builtin(local_invocation_index) lane: u32) {
  let r0 = first_of(wg, ng);
  tlq_build(r0, WG, lane, WG);
  let r = r0 + lane;
  if (r < p.N) { outi[r] = bitcast<u32>(wscale(r)); }
}
