"""Background work, one way: job.py says what a job is, table.py lists every job of the app, driver.py runs them,
status.py tells admins how they went. Nothing else in the app starts a thread on a schedule."""
