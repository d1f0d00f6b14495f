"""The database schema as an append-only list of named migrations.

Never edit or reorder an entry that has shipped: add a new one at the end. Each migration runs
in one transaction and is recorded in `schema_version`.
"""

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_kv",
        """
        CREATE TABLE kv (
            ns TEXT NOT NULL,          -- namespace: params, reg:evse, reg:meter1, secret, cm_vars…
            key TEXT NOT NULL,
            value TEXT NOT NULL,       -- JSON
            PRIMARY KEY (ns, key)
        )
        """,
    ),
    (
        "0002_devices",
        """
        CREATE TABLE devices (
            dev_id TEXT PRIMARY KEY,   -- E<n> or M<n>
            dev_type TEXT NOT NULL,
            position INTEGER NOT NULL, -- display order
            config TEXT NOT NULL       -- JSON object of the device's configuration
        )
        """,
    ),
    (
        "0003_users",
        """
        CREATE TABLE users (
            id TEXT PRIMARY KEY,       -- the user id (a secret credential)
            data TEXT NOT NULL         -- JSON user object
        )
        """,
    ),
    (
        "0004_transactions",
        """
        CREATE TABLE transactions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dev_id TEXT NOT NULL,
            user_id TEXT,
            rfid TEXT,
            start_ts REAL NOT NULL,
            end_ts REAL,
            start_wh INTEGER NOT NULL,
            end_wh INTEGER,            -- latest reading while running, final one when closed
            energy_wh INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL       -- running, closed, interrupted
        );
        CREATE INDEX transactions_user ON transactions(user_id);
        CREATE INDEX transactions_status ON transactions(status)
        """,
    ),
    (
        "0005_transaction_details",
        """
        ALTER TABLE transactions ADD COLUMN user_name TEXT;
        ALTER TABLE transactions ADD COLUMN charging_s REAL NOT NULL DEFAULT 0;
        ALTER TABLE transactions ADD COLUMN updated_ts REAL;
        ALTER TABLE transactions ADD COLUMN note TEXT NOT NULL DEFAULT '';
        CREATE INDEX transactions_dev ON transactions(dev_id)
        """,
    ),
    (
        "0006_device_counters",
        """
        CREATE TABLE device_counters (
            dev_id TEXT PRIMARY KEY REFERENCES devices(dev_id) ON DELETE CASCADE,
            soft_meter_wh REAL NOT NULL DEFAULT 0  -- energy estimate of an EVSE without meter
        );
        INSERT INTO device_counters(dev_id, soft_meter_wh)
            SELECT dev_id, json_extract(config, '$.soft_meter') FROM devices
            WHERE json_valid(config)
              AND json_type(config, '$.soft_meter') IN ('integer', 'real');
        UPDATE devices SET config = json_remove(config, '$.soft_meter')
            WHERE json_valid(config) AND json_type(config, '$.soft_meter') IS NOT NULL
        """,
    ),
    (
        "0007_usage",
        """
        CREATE TABLE usage_series (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE   -- dev_id (E1, M2), or site.grid/pv/house/cars
        );
        CREATE TABLE usage_raw (       -- one row per recording tick (~10 s), kept for a day or two
            series INTEGER NOT NULL,
            t INTEGER NOT NULL,        -- unix s
            power_w INTEGER NOT NULL,
            l1_ma INTEGER NOT NULL,
            l2_ma INTEGER NOT NULL,
            l3_ma INTEGER NOT NULL,
            import_wh INTEGER NOT NULL,  -- counters as read (0 = none)
            export_wh INTEGER NOT NULL,
            energy_mwh INTEGER NOT NULL, -- energy of the interval this sample closes
            offered_ma INTEGER NOT NULL,
            state INTEGER NOT NULL,
            PRIMARY KEY (series, t)
        ) WITHOUT ROWID;
        CREATE TABLE usage_agg (       -- downsampled buckets: tier = bucket length in s
            tier INTEGER NOT NULL,
            series INTEGER NOT NULL,
            t INTEGER NOT NULL,        -- bucket start, unix s
            n INTEGER NOT NULL,        -- raw samples in the bucket
            power_w INTEGER NOT NULL,  -- mean
            power_min_w INTEGER NOT NULL,
            power_max_w INTEGER NOT NULL,
            energy_mwh INTEGER NOT NULL, -- sum of the raw samples' energy
            PRIMARY KEY (tier, series, t)
        ) WITHOUT ROWID;
        CREATE TABLE usage_rollup (    -- tier → every bucket before done_t is final
            tier INTEGER PRIMARY KEY,
            done_t INTEGER NOT NULL
        )
        """,
    ),
]
