// The webdit playground: a form for POST /v1/images/generations with stream: true, live
// step previews from the server-sent events, the final image and its timings.
// Plain browser JavaScript (no build step), served by the Hono app.

const $ = (id) => document.getElementById(id);
const PLAN_FIELDS = ["quantizer", "bits", "rotation", "attention", "density"];
let models = [];
let controller;

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function getJson(path) {
  const r = await fetch(path, { headers: headers() });
  const body = await r.json();
  if (!r.ok) throw new Error(body?.error?.message ?? `${path}: ${r.status}`);
  return body;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function fillSelect(sel, values, { any = false, labels } = {}) {
  sel.replaceChildren();
  if (any) sel.append(new Option("any", ""));
  for (const v of values) sel.append(new Option(labels?.(v) ?? String(v), String(v)));
}

/** Plan options offered by the artifacts of the selected model. */
function refreshPlan() {
  const base = $("model").value;
  const same = models.filter((m) => m.model === base);
  for (const f of PLAN_FIELDS) {
    const vals = [...new Set(same.map((m) => m.plan[f]).filter((v) => v !== null))];
    fillSelect($(f), vals, { any: true });
  }
  const m = same[0];
  if (m) {
    const [w] = m.default_size.split("x").map(Number);
    const sizes = [...new Set([w / 2, w, w * 2].filter((s) => s >= m.size_multiple))];
    fillSelect($("size"), sizes.map((s) => `${s}x${s}`));
    $("size").value = m.default_size;
    // The model's own sampling defaults (/v1/models), as a request without them would get.
    $("steps").value = String(m.default_steps);
    $("guidance").value = String(m.default_guidance);
    $("sampler").value = m.default_sampler;
  }
}

async function init() {
  try {
    const h = await (await fetch("/healthz")).json();
    $("adapter").textContent = `${h.adapter}${h.fallback ? " (CPU)" : ""}`;
    models = (await getJson("/v1/models")).data;
    const bases = [...new Set(models.map((m) => m.model))];
    fillSelect($("model"), bases);
    refreshPlan();
    const plugins = (await getJson("/v1/plugins")).data;
    $("plugins").replaceChildren(
      ...plugins.map((p) => {
        const li = document.createElement("li");
        li.textContent = `${p.kind} ${p.name}: ${p.description ?? ""}`;
        return li;
      }),
    );
  } catch (e) {
    setStatus(String(e.message ?? e), true);
  }
}

/** Yields {event, data} of a text/event-stream body. */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function showTimings(d) {
  const t = d.timings ?? {};
  const rows = [
    ["model", `${d.model} (${d.plan})`],
    ["seed", d.seed],
    ["steps", `${d.steps} × ${d.sampler}, guidance ${d.guidance}`],
    ["queue", `${(t.queue_ms ?? 0).toFixed(0)} ms`],
    ["encode", `${(t.encode_ms ?? 0).toFixed(0)} ms`],
    ["mean step", `${(t.mean_step_ms ?? 0).toFixed(1)} ms`],
    ["total", `${(t.total_ms ?? 0).toFixed(0)} ms`],
    ["batch", `${t.batch_images} images from ${t.batch_requests} requests`],
  ];
  if (d.unknown_words?.length) rows.push(["unknown words", d.unknown_words.join(", ")]);
  $("timings").tBodies[0].replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const x of [k, v]) {
      const td = document.createElement("td");
      td.textContent = String(x);
      tr.append(td);
    }
    return tr;
  }));
  $("timings").hidden = false;
}

/**
 * The request body of the form's field values (strings). A field left empty is left out, so
 * the server's default applies (an empty number field is not 0). `defaultSteps`: the steps
 * the server gives a request without them, for the previews when Steps is empty.
 */
export function requestBody(fields, defaultSteps) {
  const body = { stream: true };
  for (const k of ["prompt", "negative_prompt", "model", "size", "sampler", ...PLAN_FIELDS]) {
    const v = (fields[k] ?? "").trim();
    if (v !== "") body[k] = ["bits", "density"].includes(k) ? Number(v) : v;
  }
  for (const k of ["steps", "guidance", "seed", "true_cfg"]) {
    const v = (fields[k] ?? "").trim();
    if (v !== "") body[k] = Number(v);
  }
  body.partial_images = Math.max(0, (body.steps ?? defaultSteps ?? 1) - 1);
  return body;
}

/** Clears what the last run left on the page: image, caption, preview, progress, timings. */
export function clearRun(get) {
  get("result").hidden = true;
  get("preview").hidden = true;
  get("preview").removeAttribute("src");
  get("caption").textContent = "";
  get("progress").textContent = "";
  get("timings").hidden = true;
}

async function generate(ev) {
  ev.preventDefault();
  const fields = {};
  const names = ["prompt", "negative_prompt", "model", "size", "sampler", "steps", "guidance"];
  for (const k of [...names, "seed", "true_cfg"]) fields[k] = $(k).value;
  for (const f of PLAN_FIELDS) fields[f] = $(f).value;
  const model = models.find((m) => m.model === fields.model);
  const body = requestBody(fields, model?.default_steps);
  controller = new AbortController();
  $("generate").disabled = true;
  $("cancel").disabled = false;
  clearRun($); // a failed run must not leave the last one's timings, progress or preview
  setStatus("queued…");
  try {
    const r = await fetch("/v1/images/generations", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({}));
      throw new Error(e?.error?.message ?? `HTTP ${r.status}`);
    }
    for await (const { event, data } of events(r.body)) {
      if (event === "image_generation.partial_image") {
        $("preview").src = `data:image/png;base64,${data.b64_json}`;
        $("preview").hidden = false;
        $("progress").textContent = `step ${data.step}/${data.total} · ${
          (data.elapsed_ms / 1000).toFixed(1)
        } s`;
        setStatus("sampling…");
      } else if (event === "image_generation.completed") {
        $("result").src = `data:image/png;base64,${data.b64_json}`;
        $("result").hidden = false;
        $("caption").textContent = `${data.size} · seed ${data.seed}`;
        $("progress").textContent = `step ${data.steps}/${data.steps}`;
        showTimings(data);
        setStatus("done");
      } else if (event === "error") {
        throw new Error(data?.error?.message ?? "generation failed");
      }
    }
  } catch (e) {
    setStatus(
      e.name === "AbortError" ? "cancelled" : String(e.message ?? e),
      e.name !== "AbortError",
    );
  } finally {
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
}

addEventListener("DOMContentLoaded", () => {
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", () => controller?.abort());
  $("model").addEventListener("change", refreshPlan);
  $("apikey").addEventListener("change", () => {
    setStatus("");
    init(); // the model and plugin lists need the key when the server asks for one
  });
  init();
});
