// The operator console in a real Chromium, as an owner uses it: sign in, create a device and
// keep its set-up code, create a payee from an uploaded QR image, create a merchant, take an
// order paid through a signed notification, see it on the overview, assign a payment that paid
// nothing, redeliver a webhook, sign out. A screenshot of each page goes to the artefacts
// folder. Run by tests/api/browser.rs, which starts the service and checks what this reports.
//
// Environment: SOLOPAY_URL, ADMIN_TOKEN, QR_IMAGE (a collection code to upload), RECEIVER_URL
// (the merchant's webhook endpoint), ARTEFACTS (a folder), CHROMIUM (the browser).

import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { writeFileSync } from "node:fs";

const base = process.env.SOLOPAY_URL;
const artefacts = process.env.ARTEFACTS;
const report = {};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ locale: "en-US" });
const page = await context.newPage();
const violations = [];
page.on("console", (message) => {
  if (message.type() === "error") violations.push(message.text());
});

async function shot(name) {
  await page.screenshot({ path: `${artefacts}/${name}.png`, fullPage: true });
}

async function expectText(text) {
  const body = await page.textContent("body");
  if (!body.includes(text)) throw new Error(`"${text}" not on ${page.url()}: ${body.slice(0, 600)}`);
}

// Sign in.
await page.goto(`${base}/console`);
await shot("01-sign-in");
await page.fill("input[name=token]", process.env.ADMIN_TOKEN);
await page.click("button[type=submit]");
await page.waitForURL(`${base}/console`);
await shot("02-overview-empty");

// A device, and its set-up code.
await page.goto(`${base}/console/devices`);
await page.fill("input[name=name]", "Counter phone");
await page.click("section button[type=submit]");
await page.waitForSelector("#device-secret");
report.device_id = (await page.textContent("#device-id")).trim();
report.device_secret = (await page.textContent("#device-secret")).trim();
report.vmq_config = (await page.textContent("#vmq-config")).trim();
await page.locator("#vmq-qr").screenshot({ path: `${artefacts}/vmq-setup-qr.png` });
await shot("03-device-setup");

// A payee, from a photo of its collection code.
await page.goto(`${base}/console/payees`);
await page.fill("section input[name=name]", "Shop WeChat");
await page.selectOption("section select[name=device_id]", report.device_id);
await page.setInputFiles("section input[name=code]", process.env.QR_IMAGE);
await page.click("section button[type=submit]");
await page.waitForURL(`${base}/console/payees`);
await expectText("Shop WeChat");
await shot("04-payees");

// A merchant; its keys are shown once.
await page.goto(`${base}/console/merchants`);
await page.fill("section input[name=name]", "My shop");
await page.fill("section input[name=notify_url]", process.env.RECEIVER_URL);
await page.click("section button[type=submit]");
await page.waitForSelector("#api-key");
report.api_key = (await page.textContent("#api-key")).trim();
await shot("05-merchant-keys");

// The listener comes online, an order is made and paid through a signed notification.
async function signed(path, body) {
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const text = JSON.stringify(body);
  const signature = createHmac("sha256", report.device_secret).update(`${timestamp}.${text}`).digest("hex");
  const response = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-solopay-device": report.device_id,
               "x-solopay-timestamp": timestamp, "x-solopay-signature": `v1=${signature}` },
    body: text,
  });
  return [response.status, await response.json()];
}
async function order(number, amount) {
  const response = await fetch(`${base}/orders`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${report.api_key}` },
    body: JSON.stringify({ merchant_order_id: number, amount, channel: "wechat" }),
  });
  if (response.status !== 201) throw new Error(`order ${number}: ${response.status}`);
  return response.json();
}
await signed("/heartbeat", {});
const first = await order("A1001", "10.00");
const [, paid] = await signed("/notify", { notification_id: "n-1", channel: "wechat", amount: first.payable_amount });
if (paid.result !== "matched") throw new Error(`not matched: ${JSON.stringify(paid)}`);
report.paid_order = first.id;

// The overview shows it.
await page.goto(`${base}/console`);
await expectText("Counter phone");
const todayPaid = await page.locator("#today tr:nth-child(2) td:nth-child(3)").textContent();
report.overview_paid = todayPaid.trim();
await shot("06-overview-paid");

// A payment nobody owed, assigned to an order after a confirmation showing both.
const [, kept] = await signed("/notify", { notification_id: "n-2", channel: "wechat", amount: "12.34" });
if (kept.result !== "unmatched") throw new Error(`not kept: ${JSON.stringify(kept)}`);
const second = await order("A1002", "12.00");
await page.goto(`${base}/console/payments?result=unmatched`);
await shot("07-payments-unmatched");
await page.click(`a[href="/console/payments/${kept.payment_id}/assign"]`);
await page.fill("input[name=order_id]", second.id);
await page.click("main form[method=get] button[type=submit]");
await page.waitForSelector("input[name=accept_differences]");
await expectText("12.34");
await shot("08-assign-confirm");
await page.fill("input[name=note]", "payer typed 12.34 by mistake");
await page.check("input[name=accept_differences]");
await page.click("main form[method=post] button[type=submit]");
await page.waitForURL(`${base}/console/orders/${second.id}`);
await expectText("paid");
await shot("09-order-assigned");
report.assigned_order = second.id;

// A webhook, redelivered.
await page.goto(`${base}/console/webhooks`);
await shot("10-webhooks");
await page.click(`table a[href^="/console/webhooks/whd_"]`);
await page.waitForSelector("form[action$=redeliver]");
report.redelivered = page.url().split("/").pop();
await page.click("form[action$=redeliver] button");
await page.waitForURL(`${base}/console/webhooks/${report.redelivered}`);
await shot("11-webhook-redelivered");

// Orders, and the language switch.
await page.goto(`${base}/console/orders`);
await shot("12-orders");
await page.click("header a[href^='/console/lang']");
await expectText("概览");
await shot("13-overview-chinese");
await page.click("header a[href^='/console/lang']");

// Sign out: the session is over.
await page.click("header form button[type=submit]");
await page.waitForURL(`${base}/console/sign-in`);
await page.goto(`${base}/console/orders`);
if (!page.url().endsWith("/console/sign-in")) throw new Error(`still signed in: ${page.url()}`);
report.signed_out = true;
report.csp_violations = violations.filter((v) => v.includes("Content Security Policy"));

writeFileSync(`${artefacts}/report.json`, JSON.stringify(report, null, 2));
await browser.close();
