// What rinha.js and rinha-final.js share, as the two official scripts do line for
// line: options, counters, setup (purge), the payments and define_stage
// functions and the handleSummary scoring. Numbers come from the scenario file.
import { sleep } from "k6";
import exec from "k6/execution";
import { Counter } from "k6/metrics";
import {
  token, setPPToken, setPPDelay, setPPFailure, resetPPDatabase, resetBackendDatabase,
  requestBackendPayment,
} from "./requests.js";
import {
  uuidv4, loadScenario, secs, stageScenarios, textSummary,
  dec, decAdd, decSub, decMul, decRound, decRoundNumber, decToNumber, decToString,
} from "./lib.js";

export function scenarioOptions(cfg, maxRequests, consistencyExec) {
  return {
    summaryTrendStats: ["p(99)", "count"],
    scenarios: {
      payments: {
        exec: "payments",
        executor: "ramping-vus",
        startVUs: 1,
        gracefulRampDown: "0s",
        stages: [{ target: Number(maxRequests), duration: secs(cfg.duration_s) }],
      },
      payments_consistency: {
        exec: consistencyExec,
        executor: "constant-vus",
        duration: secs(cfg.duration_s),
        vus: 1,
      },
      ...stageScenarios(cfg),
    },
  };
}

export const counters = {
  transactionsSuccess: new Counter("transactions_success"),
  transactionsFailure: new Counter("transactions_failure"),
  totalTransactionsAmount: new Counter("total_transactions_amount"),
  paymentsInconsistency: new Counter("payments_inconsistency"),
  defaultTotalAmount: new Counter("default_total_amount"),
  defaultTotalRequests: new Counter("default_total_requests"),
  fallbackTotalAmount: new Counter("fallback_total_amount"),
  fallbackTotalRequests: new Counter("fallback_total_requests"),
  defaultTotalFee: new Counter("default_total_fee"),
  fallbackTotalFee: new Counter("fallback_total_fee"),
};

export async function setup() {
  await setPPToken("default", token);
  await setPPToken("fallback", token);
  await resetPPDatabase("default");
  await resetPPDatabase("fallback");
  await resetBackendDatabase();
}

const LOG_IDS = __ENV.LOG_IDS === "1";

/** One payment of the scenario's amount with a fresh UUID, then a 1 s sleep. */
export function makePayments(amount) {
  const paymentRequestFixedAmount = dec(amount);
  return async function payments() {
    const payload = { correlationId: uuidv4(), amount: decToNumber(paymentRequestFixedAmount) };
    const response = await requestBackendPayment(payload);
    if (LOG_IDS) {
      // Not in the original: lets bench/run.py ask both processors about every payment.
      console.info(`RINHA_ID ${payload.correlationId} ${response.status}`);
    }
    if ([200, 201, 202, 204].includes(response.status)) {
      counters.transactionsSuccess.add(1);
      counters.transactionsFailure.add(0);
    } else {
      counters.transactionsSuccess.add(0);
      counters.transactionsFailure.add(1);
    }
    sleep(1);
  };
}

export async function define_stage() {
  const tags = exec.vu.metrics.tags;
  const defaultMs = parseInt(tags["defaultDelay"]);
  const fallbackMs = parseInt(tags["fallbackDelay"]);
  const defaultFailure = tags["defaultFailure"] === "true";
  const fallbackFailure = tags["fallbackFailure"] === "true";

  await setPPDelay("default", defaultMs);
  await setPPDelay("fallback", fallbackMs);

  await setPPFailure("default", defaultFailure);
  await setPPFailure("fallback", fallbackFailure);
  // Not in the original: tells bench/report.py when the stage took effect.
  console.info(`RINHA_STAGE ${JSON.stringify({ t: Date.now(), i: Number(tags["stageIndex"]) })}`);

  sleep(1);
}

/** Logs one consistency check for the timeline (not in the original). */
export function logCheck(now, from, to, deltaDefault, deltaFallback, inconsistencies) {
  const rec = { t: now.getTime(), from, to, dd: deltaDefault, df: deltaFallback, n: inconsistencies };
  console.info(`RINHA_CHECK ${JSON.stringify(rec)}`);
}

/** p99 rounded to 2 places and its bonus max(round((11 - p99) × 0.02, 2), 0), both exact. */
export function p99Bonus(data) {
  const sub = data.metrics["http_req_duration{expected_response:true}"];
  const raw = sub && sub.values["p(99)"] !== undefined ? sub.values["p(99)"] : 0;
  const p99 = decRoundNumber(raw, 2);
  const bonus = decRound(decMul(decSub(11, p99), "0.02"), 2);
  return { p99, bonus: bonus > 0n ? bonus : 0n };
}

/** The handleSummary of both official scripts; `extra` holds fields only one of them has. */
export function buildResults(data, maxRequests, extra) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const actual_total_amount = count("total_transactions_amount");
  const total_fee = decAdd(count("default_total_fee"), count("fallback_total_fee"));

  const { p99, bonus } = p99Bonus(data);
  const contains_inconsistencies = count("payments_inconsistency") > 0;
  const inconsistencies_fine = contains_inconsistencies ? dec("0.35") : 0n;

  // caixa dois
  const paid = count("default_total_requests") + count("fallback_total_requests");
  const lag = count("transactions_success") - paid;

  const liquid_partial_amount = decSub(actual_total_amount, total_fee);
  const liquid_amount = liquid_partial_amount
    + decMul(liquid_partial_amount, bonus)
    - decMul(liquid_partial_amount, inconsistencies_fine);

  return {
    ...extra,
    participante: __ENV.PARTICIPANT ?? "anonymous",
    total_liquido: decToNumber(liquid_amount),
    total_bruto: actual_total_amount,
    total_taxas: decToNumber(total_fee),
    descricao: "'total_liquido' é sua pontuação final. Equivale ao seu lucro. Fórmula: total_liquido + (total_liquido * p99.bonus) - (total_liquido * multa.porcentagem)",
    p99: {
      valor: `${decToString(p99)}ms`,
      bonus: `${decToString(decMul(bonus, 100))}%`,
      max_requests: maxRequests,
      descricao: "Fórmula para o bônus: max((11 - p99.valor) * 0.02, 0)",
    },
    multa: {
      porcentagem: decToNumber(inconsistencies_fine),
      total: decToNumber(decMul(liquid_partial_amount, inconsistencies_fine)),
      composicao: {
        num_inconsistencias: count("payments_inconsistency"),
        descricao: "Se 'num_inconsistencias' > 0, há multa de 35%.",
      },
    },
    caixa_dois: {
      detectado: lag < 0,
      descricao: "Se 'lag' for negativo, significa que seu backend registrou mais pagamentos do que solicitado, automaticamente desclassificando sua submissão!",
    },
    lag: {
      num_pagamentos_total: paid,
      num_pagamentos_solicitados: count("transactions_success"),
      lag: lag,
      descricao: "Lag é a diferença entre a quantidade de solicitações de pagamentos e o que foi realmente computado pelo backend. Mostra a perda de pagamentos possivelmente por estarem enfileirados.",
    },
    pagamentos_solicitados: {
      qtd_sucesso: count("transactions_success"),
      qtd_falha: count("transactions_failure"),
      descricao: "'qtd_sucesso' foram requests bem sucedidos para 'POST /payments' e 'qtd_falha' os requests com erro.",
    },
    pagamentos_realizados_default: {
      total_bruto: count("default_total_amount"),
      num_pagamentos: count("default_total_requests"),
      total_taxas: count("default_total_fee"),
      descricao: "Informações do backend sobre solicitações de pagamento para o Payment Processor Default.",
    },
    pagamentos_realizados_fallback: {
      total_bruto: count("fallback_total_amount"),
      num_pagamentos: count("fallback_total_requests"),
      total_taxas: count("fallback_total_fee"),
      descricao: "Informações do backend sobre solicitações de pagamento para o Payment Processor Fallback.",
    },
  };
}

/** handleSummary's return value: the text summary and the results file (RESULTS_FILE overrides the name). */
export function summaryOutput(data, fileName, results) {
  const participant = __ENV.PARTICIPANT;
  let path = participant === undefined ? `./${fileName}` : `../participantes/${participant}/${fileName}`;
  if (__ENV.RESULTS_FILE) path = __ENV.RESULTS_FILE;
  return { stdout: textSummary(data), [path]: JSON.stringify(results, null, 2) };
}

export { loadScenario };
