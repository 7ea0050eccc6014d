// Offline helpers for the Rinha 2025 k6 scenarios: the official scripts import
// uuidv4, textSummary, Httpx and big.js from the internet; these stand in for them.
import http from "k6/http";

/** Random (v4) UUID, lower-case, as jslib's uuidv4() returns it. */
export function uuidv4() {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === "x" ? r : (r & 0x3) | 0x8).toString(16);
  });
}

/** Loads a scenario file (init context only): stages, fees, VUs, timings. */
export function loadScenario(path) {
  const cfg = JSON.parse(open(path));
  for (const key of ["duration_s", "vus", "amount", "stages", "consistency", "teardown_window_s"]) {
    if (cfg[key] === undefined) throw new Error(`scenario ${path}: missing "${key}"`);
  }
  return cfg;
}

/** k6 duration string for a number of seconds (fractions allowed). */
export function secs(s) {
  return `${Math.round(s * 1000)}ms`;
}

/** The define_stage scenarios of the official scripts, one per stage of the file. */
export function stageScenarios(cfg) {
  const out = {};
  cfg.stages.forEach((st, i) => {
    out[`stage_${String(i).padStart(2, "0")}`] = {
      exec: "define_stage",
      startTime: secs(st.at_s),
      executor: "constant-vus",
      vus: 1,
      duration: secs(st.hold_s ?? 1),
      tags: {
        stageIndex: String(i),
        defaultDelay: String(st.default.delay),
        defaultFailure: String(!!st.default.failure),
        fallbackDelay: String(st.fallback.delay),
        fallbackFailure: String(!!st.fallback.failure),
      },
    };
  });
  return out;
}

/**
 * Exact decimal arithmetic (what big.js does in the originals): a value is a
 * BigInt count of 1e-8 units. Numbers enter through their shortest string
 * (as `new Big(n)` does), so 0.07 is exactly 7/100.
 */
const SCALE_DIGITS = 8;
const SCALE = 10n ** BigInt(SCALE_DIGITS);

export function dec(x) {
  if (typeof x === "bigint") return x;
  const { units, scale } = parseDecimal(x);
  if (scale <= SCALE_DIGITS) return units * 10n ** BigInt(SCALE_DIGITS - scale);
  // A float total such as 330000.00000000006: keep 8 places (half up); money never has more.
  return halfUp(units, 10n ** BigInt(scale - SCALE_DIGITS));
}

/** Exact {units, scale} of a number's shortest string form (as `new Big(n)` reads it) or a decimal string. */
function parseDecimal(x) {
  let s = typeof x === "number" ? String(x) : String(x).trim();
  if (typeof x === "number" && !Number.isFinite(x)) throw new Error(`dec: not finite: ${x}`);
  if (/e/i.test(s)) s = Number(s).toFixed(20).replace(/0+$/, "");
  const m = /^(-?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) throw new Error(`dec: not a decimal: ${x}`);
  const fp = m[3] ?? "";
  const units = BigInt((m[2] || "0") + fp);
  return { units: m[1] ? -units : units, scale: fp.length };
}

/** A float rounded to `dp` places, half away from zero, exactly as `new Big(n).round(dp)`. */
export function decRoundNumber(n, dp) {
  const { units, scale } = parseDecimal(n);
  if (scale <= dp) return units * 10n ** BigInt(SCALE_DIGITS - scale);
  return halfUp(units, 10n ** BigInt(scale - dp)) * 10n ** BigInt(SCALE_DIGITS - dp);
}

function halfUp(v, unit) {
  const neg = v < 0n;
  const abs = neg ? -v : v;
  let q = abs / unit;
  if ((abs % unit) * 2n >= unit) q += 1n;
  return neg ? -q : q;
}

export const decAdd = (a, b) => dec(a) + dec(b);
export const decSub = (a, b) => dec(a) - dec(b);

/** Product, exact for money × fee × bonus (at most 8 places); beyond that rounded half up. */
export function decMul(a, b) {
  return halfUp(dec(a) * dec(b), SCALE);
}

/** Rounds to `dp` decimal places, half away from zero (big.js ROUND_HALF_UP). */
export function decRound(a, dp) {
  const unit = 10n ** BigInt(SCALE_DIGITS - dp);
  return halfUp(dec(a), unit) * unit;
}

export function decToString(a) {
  const v = dec(a);
  const neg = v < 0n;
  const abs = neg ? -v : v;
  const ip = abs / SCALE;
  const fp = (abs % SCALE).toString().padStart(SCALE_DIGITS, "0").replace(/0+$/, "");
  return (neg ? "-" : "") + ip.toString() + (fp ? "." + fp : "");
}

export const decToNumber = (a) => Number(decToString(a));

/** HTTP client with the shape of jslib Httpx 0.1.0 as requests.js uses it (async calls, base URL, timeout). */
export class Client {
  constructor({ baseURL, headers = {}, timeout = 1500 }) {
    this.baseURL = baseURL;
    this.headers = headers;
    this.timeout = timeout;
  }

  params(extra = {}) {
    return {
      ...extra,
      headers: { ...this.headers, ...(extra.headers || {}) },
      timeout: extra.timeout ?? this.timeout,
    };
  }

  asyncRequest(method, path, body = null, params = {}) {
    return http.asyncRequest(method, this.baseURL + path, body, this.params(params));
  }
  asyncGet(path, params) { return this.asyncRequest("GET", path, null, params); }
  asyncPost(path, body, params) { return this.asyncRequest("POST", path, body ?? null, params); }
  asyncPut(path, body, params) { return this.asyncRequest("PUT", path, body ?? null, params); }
}

/** A plain-text end-of-test summary (the official scripts print jslib's textSummary). */
export function textSummary(data) {
  const lines = [];
  const names = Object.keys(data.metrics).sort();
  for (const name of names) {
    const m = data.metrics[name];
    const vals = Object.entries(m.values)
      .map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(4) : v}`)
      .join(" ");
    lines.push(`    ${name.padEnd(48, ".")}: ${vals}`);
  }
  return lines.join("\n") + "\n";
}
