# Runs a small tracker-sim fleet with faults and checks its JSON exactly: the faults are drawn as
# exact, disjoint shares, so every count is known in advance.
#   cmake -DSIM=path/to/tracker-sim -DOUT=out.json -P check_sim_json.cmake
execute_process(
  COMMAND ${SIM} --devices 50 --tiers 2 --fanout 2 --install-fail-share 0.1 --seed 1
          --timeout 45 --quiet --json ${OUT}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tracker-sim exited with ${rc}")
endif()
file(READ ${OUT} json)
function(expect key want)
  string(JSON got GET "${json}" ${key})
  if(NOT "${got}" STREQUAL "${want}")
    message(FATAL_ERROR "${key} is ${got}, expected ${want}\n${json}")
  endif()
endfunction()
expect(devices 50)
expect(all_final ON)
expect(confirmed 45)
expect(failed 5)  # 10% of 50 fail their install
expect(rolled_back 0)
expect(bricked 0)
expect(offline_at_end 0)
string(JSON per_device GET "${json}" root_messages_per_device)
if(per_device GREATER 1)
  message(FATAL_ERROR "root handled ${per_device} messages per device behind two tiers\n${json}")
endif()
message(STATUS "${json}")
