// The text an Engine runs once at load with quantize = int8 to calibrate SmoothQuant smoothing (model.h,
// Int8Options), when the caller gives none. Written for crossicl, not drawn from any dataset (so no benchmark's
// test items leak into the quantised weights): instruction blocks with definitions, inputs and short answers in
// the shape of in-context-learning prompts, plus prose, a dialogue, numbers and code, so that the activations it
// produces cover the channels ordinary prompts use.
#pragma once

#include <array>
#include <string_view>

namespace crossicl::detail {

inline constexpr std::array<std::string_view, 3> kCalibrationTexts = {
    R"cal(Definition: In this task, you are given a short description of the weather. Your job is to say whether the day is good for a walk. Answer "yes" or "no".
Input: Light rain all morning, clearing by noon, with a gentle breeze and a high of 18 degrees.
Output: yes

Definition: Read the recipe step and name the main cooking method it uses. Choose one of: boiling, frying, baking, steaming.
Input: Place the trays in a preheated oven and leave them for twenty-five minutes until the tops turn golden.
Output: baking

Definition: Decide whether the second sentence follows from the first. Answer with A (entailment), B (neutral) or C (contradiction).
Input: Sentence 1: The library closes at eight on weekdays. Sentence 2: On Tuesday the library is open until eight.
Output: A

Definition: Given a customer's message to a bike shop, classify its topic as "repair", "order", "refund" or "other".
Input: Hi, my chain keeps slipping when I change gears on hills. Could you take a look on Saturday?
Output: repair)cal",
    R"cal(The old lighthouse stood at the end of a narrow spit of land, and for nearly a century its keepers wrote down
every ship that passed. Their logbooks, now kept in the town museum, record storms, fog that lasted for days,
and the arrival of the first steamships in 1871. Historians use them to study how trade along the coast
changed: in 1890 about 40 vessels a month were noted; by 1925 the number had fallen below 12.

Q: What is 17 multiplied by 23?
A: 391.
Q: If a train leaves at 14:05 and the trip takes 2 hours 50 minutes, when does it arrive?
A: At 16:55.

"Are you coming to the meeting tomorrow?" asked Priya.
"I can't - I'm presenting the budget at the council at ten," Tom replied. "Send me the notes?"
"Sure. And don't forget the figures for March; they changed again.")cal",
    R"cal(def moving_average(values, window):
    """Return the mean of each run of `window` consecutive values."""
    if window <= 0:
        raise ValueError(f"window must be positive (got {window})")
    out = []
    total = sum(values[:window])
    for i in range(window, len(values) + 1):
        out.append(total / window)
        if i < len(values):
            total += values[i] - values[i - window]
    return out

Review: The camera is light and the battery lasts all day, but the menus are confusing and the lens cap fell
off twice in the first week. Rating (1-5): 3
Review: Absolutely wonderful little cafe, friendly staff, best cinnamon rolls in the city! Rating (1-5): 5
Review: Arrived broken, and support never answered my emails. Rating (1-5): 1)cal",
};

}  // namespace crossicl::detail
