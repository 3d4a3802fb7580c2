-- The Acme HR database: employees, their managers and departments, leave.
-- Plain SQLite; every write goes through the named queries in queries.py.

CREATE TABLE IF NOT EXISTS department (
    id          TEXT PRIMARY KEY,               -- e.g. FIN
    name        TEXT NOT NULL,
    cost_center TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS employee (
    id            TEXT PRIMARY KEY CHECK (id GLOB 'E-[0-9][0-9][0-9][0-9]'),
    name          TEXT NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    phone         TEXT NOT NULL CHECK (phone GLOB '+[1-9]*'),   -- E.164
    iban          TEXT NOT NULL,                                -- salary account
    national_id   TEXT NOT NULL UNIQUE,                         -- Dutch BSN (11-test)
    birth_date    TEXT NOT NULL,                                -- YYYY-MM-DD
    hire_date     TEXT NOT NULL,
    job_title     TEXT NOT NULL,
    department_id TEXT NOT NULL REFERENCES department (id),
    manager_id    TEXT REFERENCES employee (id),               -- NULL for the CEO only
    salary        INTEGER NOT NULL CHECK (salary > 0)           -- annual gross, EUR
);

CREATE TABLE IF NOT EXISTS leave_balance (
    employee_id       TEXT NOT NULL REFERENCES employee (id),
    year              INTEGER NOT NULL,
    entitled_days     REAL NOT NULL,
    carried_over_days REAL NOT NULL DEFAULT 0,
    taken_days        REAL NOT NULL DEFAULT 0,      -- approved annual leave
    PRIMARY KEY (employee_id, year)
);

CREATE TABLE IF NOT EXISTS leave_request (
    id            TEXT PRIMARY KEY CHECK (id GLOB 'LR-[0-9][0-9][0-9][0-9]'),
    employee_id   TEXT NOT NULL REFERENCES employee (id),
    leave_type    TEXT NOT NULL CHECK (leave_type IN ('annual', 'unpaid', 'parental', 'special')),
    start_date    TEXT NOT NULL,
    end_date      TEXT NOT NULL CHECK (end_date >= start_date),
    days          REAL NOT NULL CHECK (days > 0),   -- working days
    reason        TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    submitted_on  TEXT NOT NULL,
    decided_by    TEXT REFERENCES employee (id),
    decision_note TEXT
);

CREATE INDEX IF NOT EXISTS employee_manager ON employee (manager_id);
CREATE INDEX IF NOT EXISTS leave_request_employee ON leave_request (employee_id);
