// Offline port of rinha-test/rinha-final.js, the final test (k6 v1.1.0, 603 VUs, 300 s):
// consistency = |Δdefault| + |Δfallback| over [now-15 s, now-2 s] every 10 s; teardown
// takes gross, counts and fees from the processors' own summaries over the last 360 s.
// Numbers (stages, VUs, amount 20.05, windows): SCENARIO (final.json).
import {
  getPPPaymentsSummary, getBackendPaymentsSummary,
} from "./requests.js";
import { sleep } from "k6";
import { decAdd, decMul, decToNumber } from "./lib.js";
import {
  loadScenario, scenarioOptions, counters, makePayments, logCheck, buildResults, summaryOutput,
} from "./common.js";

export { setup, define_stage } from "./common.js";

const cfg = loadScenario(__ENV.SCENARIO ?? "./final.json");
const MAX_REQUESTS = __ENV.MAX_REQUESTS ?? cfg.vus;

export const options = scenarioOptions(cfg, MAX_REQUESTS, "checkPaymentsConsistency");

export const payments = makePayments(cfg.amount);

export async function teardown() {
  const to = new Date();
  const from = new Date(to.getTime() - cfg.teardown_window_s * 1000);

  console.info(`summaries from ${from.toISOString()} to ${to.toISOString()}`);

  const defaultResponse = await getPPPaymentsSummary("default", from.toISOString(), to.toISOString());
  const fallbackResponse = await getPPPaymentsSummary("fallback", from.toISOString(), to.toISOString());

  const totalTransactionsAmount = decAdd(defaultResponse.totalAmount, fallbackResponse.totalAmount);
  counters.totalTransactionsAmount.add(decToNumber(totalTransactionsAmount));

  counters.defaultTotalAmount.add(defaultResponse.totalAmount);
  counters.defaultTotalRequests.add(defaultResponse.totalRequests);
  counters.fallbackTotalAmount.add(fallbackResponse.totalAmount);
  counters.fallbackTotalRequests.add(fallbackResponse.totalRequests);

  const defaultTotalFee = decMul(defaultResponse.feePerTransaction, defaultResponse.totalAmount);
  const fallbackTotalFee = decMul(fallbackResponse.feePerTransaction, fallbackResponse.totalAmount);

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
  const inconsistencies = Math.abs(deltaDefault) + Math.abs(deltaFallback);

  counters.paymentsInconsistency.add(inconsistencies);
  logCheck(now, from, to, deltaDefault, deltaFallback, inconsistencies);

  if (inconsistencies > 0) {
    console.warn("================ [inconsistências encontradas] ================");
    console.warn(`backend.default.totalRequests vs default.totalRequests: ${backendPaymentsSummary.default.totalRequests} vs ${defaultAdminPaymentsSummary.totalRequests}`);
    console.warn(`backend.fallback.totalRequests vs fallback.totalRequests: ${backendPaymentsSummary.fallback.totalRequests} vs ${fallbackAdminPaymentsSummary.totalRequests}`);
  }

  sleep(cfg.consistency.every_s);
}

export function handleSummary(data) {
  const results = buildResults(data, MAX_REQUESTS, { timestamp: new Date().toISOString() });
  return summaryOutput(data, "final-results.json", results);
}
