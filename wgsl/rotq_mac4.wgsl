// The outlier-aware block product's step, one copy for the kernels that use it
// (rotq_outlier_fused.wgsl, rotq_outlier_cpu.wgsl): acc + v_i·Q[i] for the four i of v, in
// order — the sum of the CPU reference (runtime/reference/rotq.ts), so the values match it.
fn mac4(acc: vec4<f32>, v: vec4<f32>, qa: vec4<f32>, qb: vec4<f32>, qc: vec4<f32>, qd: vec4<f32>) -> vec4<f32> {
  var a = acc;
  a = a + v.x * qa;
  a = a + v.y * qb;
  a = a + v.z * qc;
  a = a + v.w * qd;
  return a;
}
