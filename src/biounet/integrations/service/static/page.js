// The page of `biounet serve`: upload an image, follow its job, show and offer the results.
// Plain JavaScript, no build step and nothing from elsewhere. Every request goes through fetch() so that
// it can carry the access token; results become blob: URLs (an <img> or a link cannot send the token).
"use strict";

const API = "/api/v1";
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("biounet-token") || "";
let current = null; // the run on screen: {id, url, stem, job, blobs}

async function api(path, options = {}) {
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new Error("this service needs an access token: enter it above");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail;
    } catch (ignored) {
      // not JSON: the status text says it
    }
    throw new Error(`${typeof detail === "string" ? detail : JSON.stringify(detail)} (HTTP ${response.status})`);
  }
  return response;
}

function say(text, kind = "") {
  $("status").textContent = text;
  $("status").className = kind;
}

async function loadInfo() {
  try {
    const info = await (await api(`${API}/info`)).json();
    const mib = (info.limits.max_upload_bytes / 2 ** 20).toFixed(0);
    $("model").textContent = `model ${info.model} on ${info.device} (${info.precision}); images up to ${mib} MiB`;
    const select = $("labels");
    select.replaceChildren();
    for (const method of info.labels) {
      const option = new Option(method, method, false, method === info.default_labels);
      select.append(option);
    }
    $("token-box").hidden = !info.token_required || Boolean(token);
    if (!$("status").className) say("ready");
  } catch (error) {
    $("model").textContent = "not connected";
    say(error.message, "error");
  }
}

function forget() {
  if (current) current.blobs.forEach((url) => URL.revokeObjectURL(url));
  current = null;
  $("results").hidden = true;
  $("progress").hidden = true;
}

async function submit(file) {
  forget();
  say(`uploading ${file.name}…`);
  const query = new URLSearchParams({ labels: $("labels").value || "watershed", tta: $("tta").checked ? "1" : "0" });
  try {
    const response = await api(`${API}/jobs?${query}`, {
      method: "POST",
      body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    const job = await response.json();
    const run = { id: job.id, url: job.status_url, stem: file.name.replace(/\.[^.]*$/, ""), job: null, blobs: [] };
    current = run;
    await follow(run);
  } catch (error) {
    say(error.message, "error");
  }
}

async function follow(run) {
  const bar = $("progress");
  bar.hidden = false;
  while (run === current) {
    // a long poll: answers when the job ends, or after a second with its progress
    const job = await (await api(`${run.url}?wait=1`)).json();
    if (run !== current) return;
    if (job.status === "queued") {
      say(`queued: position ${job.queue_position} in the queue`);
    } else if (job.status === "running") {
      say(`segmenting: ${job.slices_done} of ${job.slices_total} slice(s) done`);
      if (job.slices_total) bar.value = job.slices_done / job.slices_total;
    } else if (job.status === "failed") {
      bar.hidden = true;
      say(`failed: ${job.error}`, "error");
      return;
    } else {
      bar.value = 1;
      await show(run, job);
      return;
    }
  }
}

async function blobUrl(run, url) {
  const blob = await (await api(url)).blob();
  const made = URL.createObjectURL(blob);
  run.blobs.push(made);
  return made;
}

async function showSlice(run, z) {
  const results = run.job.results;
  const [membrane, overlay] = await Promise.all([
    blobUrl(run, `${results["membrane.png"]}?z=${z}`),
    blobUrl(run, `${results["overlay.png"]}?z=${z}`),
  ]);
  if (run !== current) return;
  $("membrane").src = membrane;
  $("overlay").src = overlay;
  const link = $("download-overlay");
  link.href = overlay;
  link.download = run.job.slices > 1 ? `${run.stem}_overlay_${String(z).padStart(3, "0")}.png` : `${run.stem}_overlay.png`;
  $("slice-number").textContent = String(z);
}

async function show(run, job) {
  run.job = job;
  await showSlice(run, 0);
  for (const [id, name] of [["download-membrane", "membrane.tif"], ["download-labels", "labels.tif"]]) {
    const link = $(id);
    link.hidden = !(name in job.results);
    if (!link.hidden) {
      link.href = await blobUrl(run, job.results[name]);
      link.download = `${run.stem}_${name}`;
    }
  }
  if (run !== current) return;
  $("overlay-caption").textContent = job.labels ? `Cells (${job.labels}) over the image` : "Membranes over the image";
  $("slice-box").hidden = job.slices < 2;
  $("slice").max = String(job.slices - 1);
  $("slice").value = "0";
  $("results").hidden = false;
  $("progress").hidden = true;
  say(`done: ${job.slices} slice(s) of ${job.shape[1]} × ${job.shape[0]} pixels`, "done");
}

function setUp() {
  const drop = $("drop");
  $("file").addEventListener("change", (event) => {
    if (event.target.files.length) submit(event.target.files[0]);
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) submit(event.dataTransfer.files[0]);
  });
  $("slice").addEventListener("input", (event) => {
    if (current && current.job) showSlice(current, Number(event.target.value)).catch((error) => say(error.message, "error"));
  });
  $("delete").addEventListener("click", async () => {
    if (!current) return;
    const { id } = current;
    forget();
    try {
      await api(`${API}/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
      say("the results were deleted from the server");
    } catch (error) {
      say(error.message, "error");
    }
  });
  $("token-save").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("biounet-token", token);
    say("");
    loadInfo();
  });
  loadInfo();
}

setUp();
