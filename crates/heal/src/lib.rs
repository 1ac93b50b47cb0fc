//! MAPE-K self-healing core: monitors, detectors, root-cause analysis, playbook planning and guarded execution, all driven by observations and `now`.
