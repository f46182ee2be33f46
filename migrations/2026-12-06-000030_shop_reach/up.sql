-- Shop reach (issue 15): three more protocols (易支付 V2 with RSA signs, epusdt, VPay), whose
-- orders and callbacks carry their name; checkouts, 易支付 orders whose payer picks the channel
-- before an amount is allocated; each merchant's RSA public key and default epusdt channel; the
-- platform's own RSA key pair, its private half sealed like every other secret.

ALTER TABLE orders DROP CONSTRAINT orders_protocol_check;
ALTER TABLE orders ADD CONSTRAINT orders_protocol_check
    CHECK (protocol IN ('native', 'vmq', 'epay', 'epay2', 'epusdt', 'vpay'));

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_kind_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_kind_check
    CHECK (kind IN ('standard', 'vmq', 'epay', 'epay2', 'epusdt', 'vpay'));

ALTER TABLE merchants
    -- The merchant's RSA public key (base64 of its DER SubjectPublicKeyInfo) for 易支付 V2.
    ADD COLUMN epay_v2_public_key text,
    -- The channel of an epusdt order that names none.
    ADD COLUMN epusdt_channel text CHECK (epusdt_channel IN ('wechat', 'alipay'));

-- An order whose channel the payer has not chosen yet: it holds no amount (an amount is
-- unique per payee, and there is no payee before the channel). Choosing creates the order, once:
-- the order's merchant_order_id is the checkout's, so the orders' own uniqueness decides.
CREATE TABLE checkouts (
    id                   text PRIMARY KEY,
    merchant_id          text NOT NULL REFERENCES merchants (id),
    merchant_order_id    text NOT NULL,
    request_fingerprint  bytea NOT NULL,   -- SHA-256 of the creating request's parameters
    protocol             text NOT NULL CHECK (protocol IN ('epay', 'epay2')),
    amount               numeric(12, 2) NOT NULL CHECK (amount > 0),
    subject              text,
    notify_url           text,
    return_url           text,
    compat               jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL,
    order_id             text UNIQUE REFERENCES orders (id),
    UNIQUE (merchant_id, merchant_order_id)
);

-- Key pairs of the platform: 'epay_v2' signs 易支付 V2 answers and notifications.
CREATE TABLE platform_keys (
    name         text PRIMARY KEY,
    private_key  text NOT NULL,   -- PKCS#8 PEM, sealed
    public_key   text NOT NULL,   -- base64 of the DER SubjectPublicKeyInfo
    created_at   timestamptz NOT NULL DEFAULT now()
);
