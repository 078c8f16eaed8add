-- The name of the file a job came from (issue 19: job history shows it), sealed under bulk-api's
-- key like the job's input (INV-5: a file name can say whom a job is about). NULL: none given.
ALTER TABLE jobs ADD COLUMN source_name BYTEA;
