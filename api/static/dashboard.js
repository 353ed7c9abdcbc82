// The marketers' dashboard. Every figure comes from the API with the key typed in (kept in
// this tab's sessionStorage only); text is set with textContent, never parsed as HTML.
"use strict";

const state = { key: sessionStorage.getItem("journeys-key") || "", playbook: null, journey: null, charts: {}, segment: null };
const $ = (id) => document.getElementById(id);
const NOT_STARTED = "not_started";

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${state.key}` } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = JSON.stringify((await response.json()).detail); } catch (_) { /* not JSON */ }
    throw new Error(`${response.status} ${detail}`);
  }
  return response;
}
const json = async (path) => (await api(path)).json();

function el(tag, text, attrs = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function table(id, header, rows) {
  const t = $(id);
  t.replaceChildren();
  const head = el("tr");
  header.forEach((h) => head.appendChild(el("th", h)));
  t.appendChild(head);
  rows.forEach((cells) => {
    const tr = el("tr");
    cells.forEach((c) => tr.appendChild(c instanceof Node ? c : el("td", c)));
    t.appendChild(tr);
  });
}

// A bar chart with both axes titled; `counts` makes the value axis whole numbers (no 0.4 customers).
function chart(id, labels, datasets, { category, value, counts = false, horizontal = false }) {
  if (state.charts[id]) state.charts[id].destroy();
  const along = { title: { display: true, text: category } };
  const amount = { title: { display: true, text: value }, beginAtZero: true, ticks: counts ? { precision: 0 } : {} };
  state.charts[id] = new Chart($(id), {
    type: "bar",
    data: { labels, datasets },
    options: {
      animation: false, indexAxis: horizontal ? "y" : "x",
      plugins: { legend: { display: datasets.length > 1 } },
      scales: horizontal ? { y: along, x: amount } : { x: along, y: amount },
    },
  });
}

// A panel is marked busy while its answer is on the way (over a million customers some take
// seconds): its heading says "loading", and assistive technology hears it through aria-busy.
function panel(section, draw) {
  return async (...args) => {
    $(section).setAttribute("aria-busy", "true");
    try { return await draw(...args); } finally { $(section).removeAttribute("aria-busy"); }
  };
}

const FUNNEL_FILTERS = ["from", "to", "cohort", "campaign", "channel"];

// The view lives in the URL (the journey, the funnel's window and filters; never the key), so it
// can be bookmarked and shared.
function remember() {
  const view = new URLSearchParams({ journey: state.journey });
  for (const name of FUNNEL_FILTERS) {
    const value = $(`funnel-${name}`).value.trim();
    if (value) view.set(name, value);
  }
  history.replaceState(null, "", `#${view}`);
}

const journeyTitle = (name) => state.playbook.journeys[name]?.title || name;

const percent = (r) => (r === null || r === undefined ? "–" : `${(r * 100).toFixed(1)}%`);
const duration = (s) => {
  if (s === null || s === undefined) return "–";
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400 * 2) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
};
const status = (text) => { $("status").textContent = text; };

async function connect(event) {
  event?.preventDefault();
  state.key = $("key").value || state.key;
  try {
    state.playbook = await json("/playbook");
  } catch (error) {
    status(`Could not connect: ${error.message}`);
    return;
  }
  sessionStorage.setItem("journeys-key", state.key);
  const select = $("journey");
  select.replaceChildren(...Object.keys(state.playbook.journeys).map((j) => el("option", journeyTitle(j), { value: j })));
  select.disabled = false;
  const view = new URLSearchParams(location.hash.slice(1));  // a bookmarked or shared view
  const shared = view.get("journey");
  for (const name of FUNNEL_FILTERS) $(`funnel-${name}`).value = view.get(name) || "";
  state.journey = state.playbook.journeys[shared] ? shared : state.playbook.journeys.buyer ? "buyer" : select.value;
  select.value = state.journey;
  $("main").hidden = false;
  status(`Playbook ${state.playbook.name}, version ${state.playbook.version}`);
  await refresh();
}

async function refresh() {
  const model = state.playbook.journeys[state.journey];
  remember();
  $("attribution-stage").replaceChildren(...model.stages.map((s) => el("option", s)));
  await Promise.all([counts(), funnel(), timeInStage(), alignment(), attribution(), cost()]);
  document.body.dataset.ready = "true";
}

const counts = panel("counts-section", async () => {
  const summary = await json("/segments/summary");
  const found = summary[state.journey];
  const perCustomer = state.playbook.journeys[state.journey].scope === "customer";
  // Every customer is somewhere in a customer journey; a deal or case exists only once it started.
  const labels = Object.keys(found).filter((s) => perCustomer || s !== NOT_STARTED);
  chart("counts-chart", labels, [{ label: journeyTitle(state.journey), data: labels.map((s) => found[s]), backgroundColor: "#5b7bd5" }],
    { category: `stage of the ${journeyTitle(state.journey)}`, value: "instances now", counts: true });
  table("counts-table", ["stage", "instances", ""], labels.map((s) => {
    const link = el("a", "segment", { href: "#" });
    link.addEventListener("click", (e) => { e.preventDefault(); openSegment({ journey: state.journey, stage: s }); });
    const cell = el("td"); cell.appendChild(link);
    return [s, found[s], cell];
  }));
});

// The funnel's window (From, To), for the cost panel too; and the period of the same length before it.
function funnelWindow() {
  const from = $("funnel-from").value, to = $("funnel-to").value;
  return { ...(from ? { from: `${from}T00:00:00Z` } : {}), ...(to ? { to: `${to}T00:00:00Z` } : {}) };
}
function previousPeriod() {
  const { from, to } = funnelWindow();
  if (!from || !to) return null;
  const start = Date.parse(from), end = Date.parse(to);
  return { from: new Date(start - (end - start)).toISOString(), to: new Date(start).toISOString() };
}

const funnel = panel("funnel-section", async (event) => {
  event?.preventDefault();
  if (event) { remember(); cost(); }
  const q = new URLSearchParams({ journey: state.journey, ...funnelWindow() });
  for (const name of ["cohort", "campaign", "channel"]) {
    const v = $(`funnel-${name}`).value.trim();
    if (v) q.set(name, v);
  }
  let found, previous = null;
  try { found = await json(`/analytics/funnel?${q}`); } catch (error) { status(`Funnel: ${error.message}`); return; }
  const earlier = previousPeriod();
  if (earlier) {
    const p = new URLSearchParams({ ...Object.fromEntries(q), ...earlier });
    try { previous = await json(`/analytics/funnel?${p}`); } catch (error) { status(`Funnel (previous period): ${error.message}`); }
  }
  const before = new Map((previous?.stages || []).map((s) => [s.stage, s]));
  const labels = found.stages.map((s) => s.stage);
  chart("funnel-chart", labels, [
    { label: "entered", data: found.stages.map((s) => s.entered), backgroundColor: "#5b7bd5" },
    { label: "advanced", data: found.stages.map((s) => s.advanced), backgroundColor: "#5bd58f" },
  ], { category: `stage of the ${journeyTitle(state.journey)}`, value: "stays", counts: true });
  const dropOff = (s) => (s.entered ? s.restarted / s.entered : null);  // left the journey here, not waiting
  table("funnel-table", ["stage", "entered", "advanced", "to next", "skipped next", "restarted", "still in", "passed over", "conversion",
    "drop-off", "median to advance", "p90", ...(previous ? ["entered (previous period)", "conversion (previous period)"] : [])],
    found.stages.map((s) => [s.stage, s.entered, s.advanced, s.to_next, s.skipped_next, s.restarted, s.still_in, s.passed_over,
      percent(s.conversion), percent(dropOff(s)), duration(s.time_to_advance.median_seconds), duration(s.time_to_advance.p90_seconds),
      ...(previous ? [before.get(s.stage)?.entered ?? 0, percent(before.get(s.stage)?.conversion)] : [])]));
});

const timeInStage = panel("time-section", async () => {
  const found = await json(`/analytics/time-in-stage?journey=${encodeURIComponent(state.journey)}`);
  table("time-table", ["stage", "ended stays", "median", "p75", "p90", "current stays (since, at the end)", "median", "p75", "p90", ""],
    found.stages.map((s) => {
      const cell = el("td");
      if (s.terminal) cell.textContent = "outcome";  // where the journey ends: current stays are "since", never stuck
      else if (s.ended.stays && s.current.stays) {
        const link = el("a", "stuck", { href: "#" });
        link.addEventListener("click", (e) => { e.preventDefault(); openSegment({ journey: state.journey, stage: s.stage, stuck: "true" }); });
        cell.appendChild(link);
      }
      return [s.stage, s.ended.stays, duration(s.ended.p50_seconds), duration(s.ended.p75_seconds), duration(s.ended.p90_seconds),
        s.current.stays, duration(s.current.p50_seconds), duration(s.current.p75_seconds), duration(s.current.p90_seconds), cell];
    }));
});

const alignment = panel("alignment-section", async () => {
  if (!state.playbook.journeys.buyer || !state.playbook.journeys.seller) return;
  const m = await json("/analytics/alignment?rows=buyer&columns=seller");
  const cells = new Map(m.cells.map((c) => [`${c.row}|${c.column}`, c]));
  const name = (s) => s ?? NOT_STARTED;
  table("alignment-table", ["buyer \\ seller", ...m.column_stages.map(name)], m.row_stages.map((r) => [
    name(r), ...m.column_stages.map((c) => {
      const cell = cells.get(`${r}|${c}`);
      const td = el("td");
      if (!cell) { td.textContent = "0"; return td; }
      td.className = cell.alignment === "aligned" ? "aligned" : cell.alignment.endsWith("_ahead") ? "ahead" : "behind";
      td.dataset.row = name(r); td.dataset.column = name(c);
      const link = el("a", cell.instances + (cell.with_defects ? ` ⚑${cell.with_defects}` : ""), { href: "#" });
      link.addEventListener("click", (e) => { e.preventDefault(); openSegment({ buyer: name(r), seller: name(c) }); });
      td.appendChild(link);
      return td;
    })]));
});

const attribution = panel("attribution-section", async (event) => {
  event?.preventDefault();
  const stage = $("attribution-stage").value, model = $("attribution-model").value;
  const q = new URLSearchParams({ journey: state.journey, stage, model });
  let found;
  try { found = await json(`/analytics/attribution?${q}`); } catch (error) { status(`Attribution: ${error.message}`); return; }
  chart("attribution-chart", found.campaigns.map((c) => c.name),
    [{ label: `credit for ${stage} (${model})`, data: found.campaigns.map((c) => c.credit), backgroundColor: "#d5795b" }],
    { category: "campaign", value: `credit for reaching ${stage} (${model})`, horizontal: true });
  // An empty chart says why: nothing advanced, or nothing that advanced had a campaign touch before.
  $("attribution-note").textContent = !found.advances
    ? `Nothing reached ${stage} in the window: no credit to give.`
    : !found.campaigns.length
      ? `${found.advances} reached ${stage}, none after a touch with a campaign: no campaign to credit.`
      : `${found.advances} reached ${stage}; ${found.unattributed} of them after no campaign touch.`;
  table("attribution-table", ["campaign", "credit"], [
    ...found.campaigns.map((c) => [c.name, c.credit]), ["(no campaign touch)", found.unattributed],
  ]);
});

const cost = panel("cost-section", async () => {
  let found, previous = null;
  const earlier = previousPeriod();
  try {
    found = await json(`/analytics/cost?${new URLSearchParams({ journey: state.journey, ...funnelWindow() })}`);
    if (earlier) previous = await json(`/analytics/cost?${new URLSearchParams({ journey: state.journey, ...earlier })}`);
  } catch (error) { status(`Cost: ${error.message}`); return; }
  const before = new Map((previous?.campaigns || []).map((c) => [c.campaign, c]));
  const money = (by) => Object.entries(by || {}).map(([cur, v]) => `${v} ${cur}`).join(", ") || "-";
  const stages = state.playbook.journeys[state.journey].stages;
  table("cost-table", ["campaign", "spend", "leads", "cost per lead", "converted", "lead to customer",
    ...stages.map((s) => `cost per advance to ${s}`), ...(previous ? ["leads (previous period)", "cost per lead (previous period)"] : [])],
    found.campaigns.map((c) => [c.campaign, money(c.spend), c.leads, money(c.cost_per_lead),
      `${c.converted} (${percent(c.conversion_rate)})`, `${c.customers} (${percent(c.lead_to_customer_rate)})`,
      ...stages.map((s) => money(c.stages?.[s]?.cost_per_advance)),
      ...(previous ? [before.get(c.campaign)?.leads ?? 0, money(before.get(c.campaign)?.cost_per_lead)] : [])]));
  table("cost-channel-table", ["channel", "leads", "converted", ...stages.map((s) => `advances to ${s}`)],
    (found.channels || []).map((c) => [c.channel, c.leads, `${c.converted} (${percent(c.conversion_rate)})`,
      ...stages.map((s) => c.stages?.[s]?.advances ?? 0)]));
});

const openSegment = panel("segment-section", async (filters, cursor) => {
  state.segment = filters;
  $("segment-title").textContent = Object.entries(filters).map(([k, v]) => `${k}=${v}`).join(", ");
  const q = new URLSearchParams({ ...filters, limit: "100" });
  if (cursor) q.set("cursor", cursor);
  let page;
  try { page = await json(`/segments?${q}`); } catch (error) { status(`Segment: ${error.message}`); return; }
  const members = page.scope === "customer" ? page.customers : page.instances;
  const journeys = state.playbook.journeys;
  const shown = Object.keys(journeys).filter((j) => journeys[j].scope === page.scope);
  const customers = page.scope === "customer";
  const header = [customers ? "customer" : page.scope, "touchpoints", ...shown, ...(customers ? ["next message", "why"] : [])];
  table("segment-table", header, members.map((m) => {
    const id = m.customer_id ?? m.id;
    const td = el("td");
    const link = el("a", id, { href: "#" });
    const plural = { customer: "customers", account: "accounts", deal: "deals", case: "cases" }[page.scope];
    link.addEventListener("click", (e) => { e.preventDefault(); $("timeline-scope").value = plural; $("timeline-customer").value = id; showTimeline(); });
    td.appendChild(link);
    const cells = [td, m.touchpoint_count, ...shown.map((j) => m.stages[j] ?? NOT_STARTED)];
    if (!customers) return cells;
    const r = m.recommendation;
    const message = r.message ? `${r.message.title} (${r.message.id}, ${r.kind} by ${r.channel})` : "none";
    return [...cells, message, el("td", r.reason, { class: "why" })];
  }));
  const more = $("segment-more");
  more.hidden = !page.next_cursor;
  more.onclick = () => openSegment(filters, page.next_cursor);
  $("segment-section").scrollIntoView();
});

async function exportSegment() {
  if (!state.segment) return;
  const q = new URLSearchParams({ ...state.segment, format: "csv" });
  const blob = await (await api(`/segments/export?${q}`)).blob();
  const link = $("segment-download");
  link.href = URL.createObjectURL(blob);
  link.download = "segment.csv";
  link.textContent = `segment.csv (${blob.size} bytes)`;
  link.hidden = false;
  link.click();
}

const showTimeline = panel("timeline-section", async (event) => {
  event?.preventDefault();
  const id = $("timeline-customer").value.trim();
  if (!id) return;
  let found;
  const scope = $("timeline-scope").value;
  try { found = await json(`/${scope}/${encodeURIComponent(id)}/timeline`); } catch (error) { status(`Timeline: ${error.message}`); return; }
  const box = $("timeline");
  box.replaceChildren();
  const times = [...found.touchpoints.map((t) => Date.parse(t.occurred_at)), ...found.transitions.map((t) => Date.parse(t.at))];
  const first = Math.min(...times), last = Math.max(...times), span = Math.max(last - first, 1);
  const x = (at) => `calc(7rem + ${((Date.parse(at) - first) / span) * 90}% * 0.85)`;
  const lane = (name, title, marks) => {
    const row = el("div", null, { class: "lane", "data-lane": name });
    row.appendChild(el("span", title, { class: "lane-name", title }));
    marks.forEach((m) => row.appendChild(m));
    box.appendChild(row);
  };
  // A mark, its short label under it, and what a click on it shows.
  const mark = (at, cls, label, detail) => {
    const m = el("span", null, { class: cls, title: `${at.slice(0, 16).replace("T", " ")} ${label}`, tabindex: "0" });
    const text = el("span", label, { class: "mark-label" });
    m.style.left = text.style.left = x(at);
    const show = () => { $("timeline-detail").textContent = detail; };
    m.addEventListener("click", show);
    m.addEventListener("keydown", (e) => { if (e.key === "Enter") show(); });
    return [m, text];
  };
  const ticks = [0, 0.5, 1].map((f) => new Date(first + f * span).toISOString());
  lane("axis", "", ticks.map((at) => {
    const tick = el("span", at.slice(0, 10), { class: "tick" });
    tick.style.left = x(at);
    return tick;
  }));
  box.lastChild.classList.add("axis");
  lane("touchpoints", "touchpoints", found.touchpoints.flatMap((t) => mark(t.occurred_at, "mark", t.type,
    [`${t.type} (${t.channel})`, `occurred ${t.occurred_at}`, t.campaign ? `campaign ${t.campaign}` : null,
      `touchpoint ${t.touchpoint_id}`].filter(Boolean).join("\n"))));
  // A stay as a span from the transition that entered the stage to the next one (or the latest time shown).
  const stays = (moves) => moves.filter((t) => t.to_stage).map((t) => {
    const next = moves.slice(moves.indexOf(t) + 1)[0];
    const end = next ? Date.parse(next.at) : last;
    const bar = el("span", null, { class: "span-bar", title: `${t.to_stage}: ${t.at.slice(0, 10)} → ${next ? next.at.slice(0, 10) : "now"}` });
    bar.style.left = x(t.at);
    bar.style.width = `max(.3rem, calc(${((end - Date.parse(t.at)) / span) * 90}% * 0.85))`;
    return bar;
  });
  found.journeys.forEach((j) => lane(j, journeyTitle(j), [...stays(found.transitions.filter((t) => t.journey === j)),
    ...found.transitions.filter((t) => t.journey === j).flatMap((t) =>
    mark(t.at, `mark transition${t.restart ? " restart" : ""}`, t.to_stage ?? "restart",
      `${journeyTitle(j)}: ${t.from_stage ?? NOT_STARTED} → ${t.to_stage ?? NOT_STARTED} at ${t.at}` +
      (t.defects?.length ? `\ndefects: ${t.defects.join("; ")}` : ""))) ]));
  // The accounts, deals and cases the customer is in (an open complaint among them), each its own lane.
  (found.memberships || []).forEach((m) => Object.values(m.journeys).filter((j) => j.stage).forEach((j) => {
    const since = j.since || new Date(last).toISOString();
    lane(`${m.scope} ${m.id}`, `${m.scope} ${m.id} · ${j.title}`, mark(since, "mark transition", j.stage,
      `${m.scope} ${m.id}, ${j.title}: ${j.stage} since ${since}` + (m.buying_role ? `\nrole: ${m.buying_role}` : "")));
  }));
  box.dataset.customer = id;
});

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", connect);
  $("journey").addEventListener("change", () => { state.journey = $("journey").value; refresh(); });
  $("funnel-form").addEventListener("submit", funnel);
  $("attribution-form").addEventListener("submit", attribution);
  $("segment-export").addEventListener("click", exportSegment);
  $("timeline-form").addEventListener("submit", showTimeline);
  if (state.key) connect();
});
