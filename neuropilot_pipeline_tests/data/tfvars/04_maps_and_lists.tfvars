tags = {
  cpu_scale_up_threshold = "label"
  "owner"                = "sre"
  nested = {
    max_instances = 4
  }
}
subnets = [
  "subnet-a", # first
  "subnet-b",
]
cpu_scale_up_threshold = 70
max_instances = 40
