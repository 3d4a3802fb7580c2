"""The Acme HR database's tools: named, parameterized queries for the SQL connector.

Settings name them as ``queries="examples.acme.hr.queries:QUERIES"``. The SQL is
SQLite's; arguments are bound, never spliced in.
"""

from __future__ import annotations

from connectors import SqlGuard, SqlQuery

EMPLOYEE_ID = {
    "type": "string",
    "pattern": r"^E-\d{4}$",
    "description": "Employee id, e.g. E-1009.",
}
REQUEST_ID = {
    "type": "string",
    "pattern": r"^LR-\d{4}$",
    "description": "Leave request id, e.g. LR-0001.",
}
STATUS = {
    "type": "string",
    "enum": ["pending", "approved", "rejected"],
    "description": "Request status.",
}

_REQUEST_FIELDS = (
    "id", "employee_id", "employee_name", "leave_type", "start_date", "end_date", "days",
    "reason", "status", "submitted_on", "decided_by", "decision_note",
)  # fmt: skip
_REQUEST_SELECT = """
    SELECT r.id, r.employee_id, e.name AS employee_name, r.leave_type, r.start_date,
           r.end_date, r.days, r.reason, r.status, r.submitted_on, r.decided_by,
           r.decision_note
    FROM leave_request r JOIN employee e ON e.id = r.employee_id
"""
_REQUEST_EXISTS = SqlGuard(
    "SELECT :request_id AS id WHERE NOT EXISTS "
    "(SELECT 1 FROM leave_request WHERE id = :request_id)",
    "leave request {request_id} not found",
)
_REQUEST_PENDING = SqlGuard(
    "SELECT status FROM leave_request WHERE id = :request_id AND status <> 'pending'",
    "leave request {request_id} is already {status}; only a pending request can be decided",
)
_DECIDED_BY = "(SELECT manager_id FROM employee WHERE employee.id = leave_request.employee_id)"

QUERIES: list[SqlQuery] = [
    SqlQuery(
        name="get_employee",
        description="Get one employee's record: contact details, salary account (IBAN), "
        "national id, job, department, manager and salary.",
        sql="""
            SELECT e.id, e.name, e.email, e.phone, e.iban, e.national_id, e.birth_date,
                   e.hire_date, e.job_title, d.name AS department, e.manager_id, e.salary
            FROM employee e JOIN department d ON d.id = e.department_id
            WHERE e.id = :employee_id
        """,
        parameters={
            "type": "object",
            "properties": {"employee_id": EMPLOYEE_ID},
            "required": ["employee_id"],
        },
        returns="one",
        fields=(
            "id",
            "name",
            "email",
            "phone",
            "iban",
            "national_id",
            "birth_date",
            "hire_date",
            "job_title",
            "department",
            "manager_id",
            "salary",
        ),
        not_found="employee {employee_id} not found",
    ),
    SqlQuery(
        name="find_employee",
        description="Find employees whose name contains the given text (any case), "
        "optionally in one department.",
        sql="""
            SELECT e.id, e.name, e.email, e.job_title, d.name AS department, e.manager_id
            FROM employee e JOIN department d ON d.id = e.department_id
            WHERE instr(lower(e.name), lower(:name)) > 0
              AND (:department IS NULL OR lower(d.name) = lower(:department)
                   OR lower(d.id) = lower(:department))
            ORDER BY e.id
        """,
        parameters={
            "type": "object",
            "properties": {
                "name": {
                    "type": "string",
                    "minLength": 2,
                    "maxLength": 100,
                    "description": "Part of the name, e.g. 'van Dijk'.",
                    # a search text: the caller quotes the request or a record
                    "x-umiq-quoted": True,
                },
                "department": {
                    "type": "string",
                    "maxLength": 60,
                    "description": "Department name or code, e.g. Finance.",
                },
            },
            "required": ["name"],
        },
        fields=("id", "name", "email", "job_title", "department", "manager_id"),
    ),
    SqlQuery(
        name="get_manager",
        description="Get the manager an employee reports to.",
        sql="""
            SELECT m.id, m.name, m.email, m.phone, m.job_title, d.name AS department
            FROM employee e
            JOIN employee m ON m.id = e.manager_id
            JOIN department d ON d.id = m.department_id
            WHERE e.id = :employee_id
        """,
        parameters={
            "type": "object",
            "properties": {"employee_id": EMPLOYEE_ID},
            "required": ["employee_id"],
        },
        returns="one",
        fields=("id", "name", "email", "phone", "job_title", "department"),
        not_found="employee {employee_id} not found, or reports to no one",
    ),
    SqlQuery(
        name="list_direct_reports",
        description="List the employees who report directly to a manager.",
        sql="""
            SELECT id, name, email, job_title FROM employee
            WHERE manager_id = :manager_id ORDER BY id
        """,
        parameters={
            "type": "object",
            "properties": {"manager_id": {**EMPLOYEE_ID, "description": "The manager's id."}},
            "required": ["manager_id"],
        },
        fields=("id", "name", "email", "job_title"),
    ),
    SqlQuery(
        name="get_leave_balance",
        description="Get an employee's annual leave balance for a year (default 2025): "
        "days entitled, carried over, taken, pending approval and remaining.",
        sql="""
            SELECT b.employee_id, e.name, b.year, b.entitled_days, b.carried_over_days,
                   b.taken_days,
                   COALESCE((SELECT sum(r.days) FROM leave_request r
                             WHERE r.employee_id = b.employee_id AND r.status = 'pending'
                               AND r.leave_type = 'annual'
                               AND CAST(substr(r.start_date, 1, 4) AS INTEGER) = b.year),
                            0.0) AS pending_days,
                   b.entitled_days + b.carried_over_days - b.taken_days AS remaining_days
            FROM leave_balance b JOIN employee e ON e.id = b.employee_id
            WHERE b.employee_id = :employee_id AND b.year = COALESCE(:year, 2025)
        """,
        parameters={
            "type": "object",
            "properties": {
                "employee_id": EMPLOYEE_ID,
                "year": {
                    "type": "integer",
                    "minimum": 2000,
                    "maximum": 2100,
                    "description": "Calendar year, e.g. 2025.",
                },
            },
            "required": ["employee_id"],
        },
        returns="one",
        fields=(
            "employee_id",
            "name",
            "year",
            "entitled_days",
            "carried_over_days",
            "taken_days",
            "pending_days",
            "remaining_days",
        ),
        not_found="no leave balance for employee {employee_id} in that year",
    ),
    SqlQuery(
        name="list_leave_requests",
        description="List leave requests, optionally of one employee, of a manager's "
        "direct reports, or by status.",
        sql=_REQUEST_SELECT
        + """
            WHERE (:employee_id IS NULL OR r.employee_id = :employee_id)
              AND (:manager_id IS NULL OR e.manager_id = :manager_id)
              AND (:status IS NULL OR r.status = :status)
            ORDER BY r.id
        """,
        parameters={
            "type": "object",
            "properties": {
                "employee_id": {**EMPLOYEE_ID, "description": "Only this employee's."},
                "manager_id": {**EMPLOYEE_ID, "description": "Only this manager's team's."},
                "status": STATUS,
            },
        },
        fields=_REQUEST_FIELDS,
    ),
    SqlQuery(
        name="get_leave_request",
        description="Get one leave request: who, which days, type, status and decision.",
        sql=_REQUEST_SELECT + " WHERE r.id = :request_id",
        parameters={
            "type": "object",
            "properties": {"request_id": REQUEST_ID},
            "required": ["request_id"],
        },
        returns="one",
        fields=_REQUEST_FIELDS,
        not_found="leave request {request_id} not found",
    ),
    SqlQuery(
        name="approve_leave_request",
        description="Approve a pending leave request on behalf of the employee's manager; "
        "annual leave is taken from the balance and must not exceed what remains.",
        effect="write",
        sql=[
            """
            UPDATE leave_balance
            SET taken_days = taken_days + (SELECT days FROM leave_request WHERE id = :request_id)
            WHERE employee_id = (SELECT employee_id FROM leave_request WHERE id = :request_id
                                 AND leave_type = 'annual' AND status = 'pending')
              AND year = (SELECT CAST(substr(start_date, 1, 4) AS INTEGER)
                          FROM leave_request WHERE id = :request_id)
            """,
            f"""
            UPDATE leave_request
            SET status = 'approved', decided_by = {_DECIDED_BY}, decision_note = :note
            WHERE id = :request_id AND status = 'pending'
            """,
        ],
        parameters={
            "type": "object",
            "properties": {
                "request_id": REQUEST_ID,
                "note": {
                    "type": "string",
                    "maxLength": 500,
                    "description": "An optional note to the employee.",
                },
            },
            "required": ["request_id"],
        },
        guards=[
            _REQUEST_EXISTS,
            _REQUEST_PENDING,
            SqlGuard(
                """
                SELECT r.days, b.entitled_days + b.carried_over_days - b.taken_days AS left
                FROM leave_request r JOIN leave_balance b
                  ON b.employee_id = r.employee_id
                 AND b.year = CAST(substr(r.start_date, 1, 4) AS INTEGER)
                WHERE r.id = :request_id AND r.leave_type = 'annual'
                  AND r.days > b.entitled_days + b.carried_over_days - b.taken_days
                """,
                "leave request {request_id} asks for {days:g} days of annual leave but only "
                "{left:g} remain",
            ),
        ],
        result_sql=_REQUEST_SELECT + " WHERE r.id = :request_id",
        returns="one",
        fields=_REQUEST_FIELDS,
    ),
    SqlQuery(
        name="reject_leave_request",
        description="Reject a pending leave request on behalf of the employee's manager, "
        "giving the reason.",
        effect="write",
        sql=f"""
            UPDATE leave_request
            SET status = 'rejected', decided_by = {_DECIDED_BY}, decision_note = :reason
            WHERE id = :request_id AND status = 'pending'
        """,
        parameters={
            "type": "object",
            "properties": {
                "request_id": REQUEST_ID,
                "reason": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 500,
                    "description": "Why the request is rejected.",
                },
            },
            "required": ["request_id", "reason"],
        },
        guards=[_REQUEST_EXISTS, _REQUEST_PENDING],
        result_sql=_REQUEST_SELECT + " WHERE r.id = :request_id",
        returns="one",
        fields=_REQUEST_FIELDS,
    ),
]
