// Offline port of rinha-test/rinha.js, the preview test (k6 v1.1.0, MAX_REQUESTS 550):
// consistency = |Δdefault + Δfallback| over [now-15 s, now-1.5 s] every 10 s;
// teardown takes gross and counts from the backend's own summary over the last 70 s,
// fees = processor feePerTransaction × backend amount. Numbers: SCENARIO (preview.json).
import {
  getPPPaymentsSummary, getBackendPaymentsSummary,
} from "./requests.js";
import { sleep } from "k6";
import { decAdd, decMul, decToNumber } from "./lib.js";
import {
  loadScenario, scenarioOptions, counters, makePayments, logCheck, buildResults, summaryOutput,
} from "./common.js";

export { setup, define_stage } from "./common.js";

const cfg = loadScenario(__ENV.SCENARIO ?? "./preview.json");
const MAX_REQUESTS = __ENV.MAX_REQUESTS ?? cfg.vus;

export const options = scenarioOptions(cfg, MAX_REQUESTS, "checkPaymentsConsistency");

export const payments = makePayments(cfg.amount);

export async function teardown() {
  const to = new Date();
  const from = new Date(to.getTime() - cfg.teardown_window_s * 1000);

  console.info(`summaries from ${from.toISOString()} to ${to.toISOString()}`);

  const defaultResponse = await getPPPaymentsSummary("default", from.toISOString(), to.toISOString());
  const fallbackResponse = await getPPPaymentsSummary("fallback", from.toISOString(), to.toISOString());
  const backendPaymentsSummary = await getBackendPaymentsSummary(from.toISOString(), to.toISOString());

  const totalTransactionsAmount = decAdd(
    backendPaymentsSummary.default.totalAmount,
    backendPaymentsSummary.fallback.totalAmount,
  );
  counters.totalTransactionsAmount.add(decToNumber(totalTransactionsAmount));

  counters.defaultTotalAmount.add(backendPaymentsSummary.default.totalAmount);
  counters.defaultTotalRequests.add(backendPaymentsSummary.default.totalRequests);
  counters.fallbackTotalAmount.add(backendPaymentsSummary.fallback.totalAmount);
  counters.fallbackTotalRequests.add(backendPaymentsSummary.fallback.totalRequests);

  const defaultTotalFee = decMul(defaultResponse.feePerTransaction, backendPaymentsSummary.default.totalAmount);
  const fallbackTotalFee = decMul(fallbackResponse.feePerTransaction, backendPaymentsSummary.fallback.totalAmount);

  counters.defaultTotalFee.add(decToNumber(defaultTotalFee));
  counters.fallbackTotalFee.add(decToNumber(fallbackTotalFee));
}

export async function checkPaymentsConsistency() {
  const now = new Date();

  const from = new Date(now - 1000 * cfg.consistency.from_s).toISOString();
  const to = new Date(now - cfg.consistency.to_ms).toISOString();

  const [defaultAdminPaymentsSummary, fallbackAdminPaymentsSummary, backendPaymentsSummary] = await Promise.all([
    getPPPaymentsSummary("default", from, to),
    getPPPaymentsSummary("fallback", from, to),
    getBackendPaymentsSummary(from, to),
  ]);

  const deltaDefault = backendPaymentsSummary.default.totalRequests - defaultAdminPaymentsSummary.totalRequests;
  const deltaFallback = backendPaymentsSummary.fallback.totalRequests - fallbackAdminPaymentsSummary.totalRequests;
  const inconsistencies = Math.abs(deltaDefault + deltaFallback);

  counters.paymentsInconsistency.add(inconsistencies);
  logCheck(now, from, to, deltaDefault, deltaFallback, inconsistencies);

  if (inconsistencies > 0) {
    console.warn(`${inconsistencies} inconsistências encontradas.`);
  }

  sleep(cfg.consistency.every_s);
}

export function handleSummary(data) {
  return summaryOutput(data, "partial-results.json", buildResults(data, MAX_REQUESTS, {}));
}
