"""The fixed values of the input and output contract, version 1 (contract.md, "Fixed
values"), written out here by hand so that the tests hold the knowledge base and the
engine to the contract, not to themselves."""

from __future__ import annotations

CONTRACT_SYMPTOMS = [
    "muscle_weakness", "leg_weakness", "heavy_limbs", "muscle_atrophy", "difficulty_walking",
    "unable_to_walk_unsupported", "gait_ataxia", "balance_problems", "falls", "tremor",
    "speech_difficulty", "swallowing_difficulty", "spasticity", "reduced_reflexes",
    "brisk_reflexes", "paresthesia", "numbness", "burning_pain", "leg_ache",
    "loss_of_proprioception", "loss_of_vibration_sense", "taste_smell_change",
    "memory_loss", "confusion", "poor_concentration", "depression", "irritability",
    "mood_swings", "anxiety", "psychosis", "blurred_vision", "double_vision", "vision_loss",
    "fatigue", "pale_skin", "shortness_of_breath", "headache", "tinnitus", "sleep_disturbance",
    "glossitis", "constipation", "diarrhea", "developmental_delay", "seizures",
    "localized_muscle_soreness", "improves_with_rest", "recent_overexertion",
    "swelling_or_bruising", "relapsing_remitting_course", "bladder_dysfunction",
    "bowel_dysfunction", "saddle_numbness", "ascending_weakness", "breathing_difficulty",
    "one_sided_weakness", "back_pain",
]  # fmt: skip

CONTRACT_CONDITIONS = [
    "pernicious_anemia", "family_history_pernicious_anemia", "atrophic_gastritis",
    "celiac_disease", "crohns_disease", "gastrectomy", "bariatric_surgery", "ileal_resection",
    "pelvic_radiotherapy", "autoimmune_thyroid_disease", "sjogren_syndrome", "type1_diabetes",
    "type2_diabetes", "chronic_kidney_disease", "multiple_sclerosis", "leber_disease",
    "genetic_b12_disorder", "hiv", "diabetic_neuropathy",
]  # fmt: skip

CONTRACT_MEDICATIONS = [
    "metformin", "proton_pump_inhibitor", "h2_blocker", "colchicine", "phenobarbital",
    "pregabalin", "primidone", "topiramate", "folic_acid", "b12_supplement",
]  # fmt: skip

CONTRACT_EXPOSURES = ["nitrous_oxide", "alcohol_excess"]

CONTRACT_LAB_TESTS = [
    "total_b12", "active_b12", "mma", "homocysteine", "mcv", "hemoglobin", "serum_folate",
    "intrinsic_factor_antibody", "egfr",
]  # fmt: skip

CONTRACT_NEXT_STEPS = [
    "order_total_b12", "order_active_b12", "order_mma", "order_homocysteine",
    "order_full_blood_count", "order_folate", "order_intrinsic_factor_antibodies",
    "order_coeliac_serology", "start_treatment_now", "start_treatment",
    "seek_specialist_advice", "refer_neurology", "emergency_assessment",
    "stop_nitrous_oxide", "review_medication", "dietary_changes", "schedule_review",
    "periodic_monitoring", "continue_maintenance",
]  # fmt: skip

CONTRACT_WARNINGS = [
    "irreversible_damage_risk", "folic_acid_masking", "normal_b12_does_not_exclude",
    "no_anemia_does_not_exclude", "renal_mma_caveat", "pregnancy_total_b12_caveat",
    "nitrous_oxide_normal_b12", "hypokalemia_monitoring",
    "post_treatment_level_uninterpretable", "ethnicity_reference_range",
    "leber_disease_cyanocobalamin", "red_flag_not_b12", "maintenance_overdue",
]  # fmt: skip

CONTRACT_WARNING_SEVERITIES = ["info", "warning", "critical"]

CONTRACT_REGIMENS = [
    "im_neurological", "im_standard", "oral_high_dose", "oral_low_dose",
    "us_label_cyanocobalamin",
]  # fmt: skip

CONTRACT_MILESTONES = [
    "reticulocyte_response", "motor_conduction_amplitude", "proximal_power", "hand_function",
    "plantar_flexion", "dorsiflexion", "sensory_conduction", "neurological_response",
]  # fmt: skip

CONTRACT_URGENCY = ["emergency", "urgent", "soon", "routine", "self_care"]

CONTRACT_SUSPICION_LEVELS = ["low", "moderate", "high"]

CONTRACT_DEFICIENCY_STATUSES = ["confirmed", "likely", "indeterminate", "unlikely", "not_assessed"]

CONTRACT_DURATIONS = ["lifelong", "while_cause_persists", "until_replete"]

CONTRACT_FITS = ["good", "partial", "poor"]

CONTRACT_BANDS_BY_TEST: dict[str, set[str]] = {
    "total_b12": {"deficient", "indeterminate", "normal"},
    "active_b12": {"deficient", "indeterminate", "normal"},
    "mma": {"elevated", "normal"},
    "homocysteine": {"elevated", "normal"},
    "mcv": {"low", "normal", "high"},
    "hemoglobin": {"low", "normal", "high"},
    "serum_folate": {"low", "normal", "high"},
    "egfr": {"low", "normal", "high"},
    "intrinsic_factor_antibody": {"positive", "negative"},
}

CONTRACT_PROFILES = ["nice-ng239", "bsh-2014", "us-label"]
