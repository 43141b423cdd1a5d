# no newline at the end
max_instances = 200