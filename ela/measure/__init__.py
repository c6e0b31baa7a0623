"""How ela measures: timed loops, energy meters (NVML, RAPL, CodeCarbon), metrics, verdicts, device claims."""
