// The row kernels' inner step, shared by dense attention (attention.wgsl) and PARO's float
// path (attn_sparse_f.wgsl), pasted at their `//@rows_step8` line (runtime/gpu/compose.ts
// expandMarkers; a function could not read the override-sized workgroup arrays: naga 29
// panics on that). In scope there: the 8 staged keys j … j + 7 (K and V rows of d4 vec4s in
// ks and vs), ba and bb (their score bias, 0 or INVALID), and the thread's RPT query rows:
// scaled q and output sums qr, o (row r at r·D4MAX), running max m and sum l.
// Scores of the 8 keys for every row: each K vec4 feeds RPT dot products.
var sa: array<vec4<f32>, RMAX>;
var sb: array<vec4<f32>, RMAX>;
for (var r = 0u; r < RPT; r++) {
  sa[r] = vec4<f32>(0.0); // naga does not re-zero a `var` declared in a loop
  sb[r] = vec4<f32>(0.0);
}
for (var c = 0u; c < d4; c++) {
  var kv: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) { kv[i] = ks[(j + i) * d4 + c]; }
  for (var r = 0u; r < RPT; r++) {
    let qc = qr[r * D4MAX + c];
    sa[r] += vec4<f32>(dot(qc, kv[0]), dot(qc, kv[1]), dot(qc, kv[2]), dot(qc, kv[3]));
    sb[r] += vec4<f32>(dot(qc, kv[4]), dot(qc, kv[5]), dot(qc, kv[6]), dot(qc, kv[7]));
  }
}
// Online softmax per row; sa/sb become the probabilities, al the rescale.
var al: array<f32, RMAX>;
for (var r = 0u; r < RPT; r++) {
  let s0 = sa[r] + ba;
  let s1 = sb[r] + bb;
  let mn = max(m[r], max(hmax(s0), hmax(s1)));
  al[r] = exp2(m[r] - mn);
  sa[r] = select(vec4<f32>(0.0), exp2(s0 - mn), s0 > vec4<f32>(LIVE));
  sb[r] = select(vec4<f32>(0.0), exp2(s1 - mn), s1 > vec4<f32>(LIVE));
  l[r] = l[r] * al[r] + hsum(sa[r]) + hsum(sb[r]);
  m[r] = mn;
}
for (var c = 0u; c < d4; c++) {
  var vv: array<vec4<f32>, 8>;
  for (var i = 0u; i < 8u; i++) { vv[i] = vs[(j + i) * d4 + c]; }
  for (var r = 0u; r < RPT; r++) {
    let pa = sa[r];
    let pc = sb[r];
    var acc = o[r * D4MAX + c] * al[r];
    acc += pa.x * vv[0] + pa.y * vv[1] + pa.z * vv[2] + pa.w * vv[3];
    acc += pc.x * vv[4] + pc.y * vv[5] + pc.z * vv[6] + pc.w * vv[7];
    o[r * D4MAX + c] = acc;
  }
}
