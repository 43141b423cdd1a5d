startup_script = <<EOT
min_instances = 100
latency_threshold_ms = 1
EOT
indented = <<-EOT
    max_instances = 7
  EOT
min_instances = 2
latency_threshold_ms = 250
